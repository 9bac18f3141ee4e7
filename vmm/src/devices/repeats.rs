//! Counting a warning a guest can trigger at will, logged on its 1st, 2nd, 4th, 8th, ...
//! occurrence: a guest repeating it without end adds a line per doubling to `vmm.log`, not one
//! per packet.

/// How often one guest-triggered warning has occurred.
#[derive(Debug, Default)]
pub struct Repeats {
    count: u64,
}

impl Repeats {
    /// Counts one occurrence; returns the count when it is time to log it (a power of two).
    pub fn occurred(&mut self) -> Option<u64> {
        self.count = self.count.saturating_add(1);
        self.count.is_power_of_two().then_some(self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_on_each_doubling_only() {
        let mut repeats = Repeats::default();
        let logged: Vec<u64> = (0..100).filter_map(|_| repeats.occurred()).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16, 32, 64]);
    }
}
