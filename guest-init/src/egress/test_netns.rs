//! Runs a test on a thread of its own in a new network namespace (needs CAP_SYS_ADMIN; the
//! test is skipped without it): interfaces, addresses and routes made there vanish with it.

/// Runs `test` in a fresh network namespace; `None` (after saying so) if none can be made.
pub fn in_new_net_namespace<T: Send + 'static>(
    name: &str,
    test: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let name = name.to_string();
    std::thread::spawn(move || {
        // SAFETY: plain syscall; CLONE_NEWNET moves only this thread (it shares no namespace
        // state the other threads rely on) and the thread ends with the test.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            println!(
                "{name}: skipped (no new network namespace: {})",
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(test())
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// An interface kind this kernel can create, found by creating `probe0` (call inside
/// [`in_new_net_namespace`]): the guest's `dummy` if possible, else `ifb`, which behaves alike
/// (an interface that sends nowhere) and is there on build machines without `dummy`.
pub fn interface_kind() -> Option<&'static str> {
    ["dummy", "ifb"]
        .into_iter()
        .find(|kind| super::netlink::add_link("probe0", kind).is_ok())
}
