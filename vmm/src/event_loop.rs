//! The device event loop thread, which can be paused (for snapshots and resets: no device may
//! touch guest memory while its state is saved or replaced) and stopped.

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

/// The event manager type every device subscriber registers with.
pub type Subscribers = EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LoopState {
    Running,
    PauseRequested,
    Paused,
    Stop,
}

struct Control {
    wake: EventFd,
    state: Mutex<LoopState>,
    changed: Condvar,
}

/// Drains the wake eventfd so `run` returns and the loop looks at its state.
struct Waker(Arc<Control>);

impl MutEventSubscriber for Waker {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.0.wake.read();
    }
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.0.wake, EventSet::IN)) {
            tracing::error!("registering the event loop waker failed: {e:?}");
        }
    }
}

/// Handle to the running loop thread.
pub struct EventLoop {
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop").finish_non_exhaustive()
    }
}

impl EventLoop {
    /// Starts a thread running `subscribers`; `on_error` is called if the loop itself fails.
    /// The thread installs `filters`' event-loop filter before it handles any event.
    pub fn spawn(
        mut subscribers: Subscribers,
        on_error: impl Fn(String) + Send + 'static,
        filters: Option<Arc<crate::seccomp::Filters>>,
    ) -> std::io::Result<Self> {
        let control = Arc::new(Control {
            wake: EventFd::new(libc::EFD_NONBLOCK)?,
            state: Mutex::new(LoopState::Running),
            changed: Condvar::new(),
        });
        subscribers.add_subscriber(Arc::new(Mutex::new(Waker(control.clone()))));
        let c = control.clone();
        let thread = std::thread::Builder::new()
            .name("vmm-events".into())
            .spawn(move || {
                if let Some(filters) = filters {
                    if let Err(e) = filters.install(crate::seccomp::ThreadKind::Events) {
                        on_error(format!(
                            "device event loop: {}",
                            crate::seccomp::describe(&e)
                        ));
                        return;
                    }
                }
                loop {
                    {
                        let mut state = crate::devices::bus::lock(&c.state);
                        if *state == LoopState::PauseRequested {
                            *state = LoopState::Paused;
                            c.changed.notify_all();
                        }
                        while *state == LoopState::Paused {
                            state = c.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                        }
                        if *state == LoopState::Stop {
                            return;
                        }
                    }
                    if let Err(e) = subscribers.run() {
                        on_error(format!("device event loop failed: {e:?}"));
                        return;
                    }
                }
            })?;
        Ok(Self {
            control,
            thread: Some(thread),
        })
    }

    fn set(&self, new: LoopState) {
        *crate::devices::bus::lock(&self.control.state) = new;
        self.control.changed.notify_all();
        let _ = self.control.wake.write(1);
    }

    /// Stops device processing and waits until the loop is idle.
    pub fn pause(&self) {
        self.set(LoopState::PauseRequested);
        let mut state = crate::devices::bus::lock(&self.control.state);
        while *state == LoopState::PauseRequested {
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                return;
            }
            let (s, _) = self
                .control
                .changed
                .wait_timeout(state, std::time::Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner());
            state = s;
        }
    }

    /// Lets device processing go on.
    pub fn resume(&self) {
        self.set(LoopState::Running);
    }

    /// Ends the loop thread.
    pub fn stop(&mut self) {
        self.set(LoopState::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counter {
        evt: EventFd,
        seen: Arc<AtomicUsize>,
    }
    impl MutEventSubscriber for Counter {
        fn process(&mut self, _e: Events, _o: &mut EventOps) {
            let _ = self.evt.read();
            self.seen.fetch_add(1, Ordering::SeqCst);
        }
        fn init(&mut self, ops: &mut EventOps) {
            ops.add(Events::new(&self.evt, EventSet::IN)).unwrap();
        }
    }

    #[test]
    fn paused_loop_processes_nothing_until_resumed() {
        let mut subs = Subscribers::new().unwrap();
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        subs.add_subscriber(Arc::new(Mutex::new(Counter {
            evt: evt.try_clone().unwrap(),
            seen: seen.clone(),
        })));
        // Under its seccomp filter, as in every VMM: a syscall it lacks kills this test.
        let filters = crate::seccomp::Filters::new(crate::seccomp::Mode::Enforce);
        let mut lp = EventLoop::spawn(subs, |_| {}, Some(Arc::new(filters))).unwrap();
        evt.write(1).unwrap();
        let wait_for = |n| {
            for _ in 0..200 {
                if seen.load(Ordering::SeqCst) >= n {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            false
        };
        assert!(wait_for(1));
        lp.pause();
        evt.write(1).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "nothing processed while paused"
        );
        lp.resume();
        assert!(wait_for(2));
        lp.stop();
    }
}
