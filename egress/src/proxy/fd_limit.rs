//! File descriptors for the connections the proxy promises: at start the soft `RLIMIT_NOFILE`
//! is raised to the hard limit, and if even that cannot hold two descriptors per connection
//! (guest and upstream) plus the proxy's own, the connection limit is lowered to what fits.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors the proxy uses besides its connections: the listener, the log, policy and map
/// reads, the runtime, resolutions in flight.
pub(crate) const FD_HEADROOM: u64 = 64;
/// Descriptors one connection holds: the guest's stream and the upstream's.
const FDS_PER_CONNECTION: u64 = 2;

/// Raises the soft descriptor limit to the hard one (where it is lower) and returns the soft
/// limit now in force (`None`: unlimited).
pub(crate) fn raise_fd_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some() && limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return limit.maximum,
            Err(error) => tracing::warn!(%error, "raising the open-file limit"),
        }
    }
    limit.current
}

/// The most connections that fit in `fd_limit` descriptors (`None`: unlimited), at most
/// `wanted`.
pub(crate) fn connections_within(fd_limit: Option<u64>, wanted: usize) -> usize {
    let Some(fd_limit) = fd_limit else {
        return wanted;
    };
    let fitting = fd_limit.saturating_sub(FD_HEADROOM) / FDS_PER_CONNECTION;
    usize::try_from(fitting).map_or(wanted, |fitting| fitting.min(wanted))
}

/// Raises the descriptor limit and returns the connection limit to use: `wanted`, or less (with
/// a warning) if the descriptors cannot hold that many.
pub(crate) fn effective_max_connections(wanted: usize) -> usize {
    let fd_limit = raise_fd_limit();
    let effective = connections_within(fd_limit, wanted).max(wanted.min(1));
    if effective < wanted {
        tracing::warn!(
            wanted,
            effective,
            fd_limit,
            "the open-file limit is too low for the configured connections; serving fewer"
        );
    }
    effective
}

#[cfg(test)]
mod tests;
