//! A live share's host watch: what the guest may cache for long, and the notifications a
//! change on the host becomes.

use super::*;

const RENAME: u32 = 12;

/// The entry timeout, in seconds, of a LOOKUP of `name` in `parent`, and the node.
fn looked_up(guest: &mut Guest, parent: u64, name: &str) -> (u64, u64) {
    let reply = guest.ask(LOOKUP, parent, &[name.as_bytes(), &[0]]);
    assert_eq!(reply.error, 0, "lookup {name}");
    // fuse_entry_out: nodeid, generation, entry_valid, attr_valid, ...
    let field = |at: usize| u64::from_le_bytes(reply.body[at..at + 8].try_into().unwrap());
    assert_eq!(field(16), field(24), "entry and attribute timeouts");
    (field(0), field(16))
}

#[test]
fn a_live_share_tells_the_guest_of_host_changes_and_is_cached_long_beneath_watches() {
    let (_root, ws) = host_tree();
    std::fs::create_dir(ws.join("sub")).unwrap();
    std::fs::write(ws.join("sub/inner"), b"x").unwrap();
    let server = Arc::new(WorkspaceServer::new(&ws, WorkspaceMode::Live, AGENT).unwrap());
    server.start_watch().unwrap();
    let mut guest = Guest::to(server);
    let (file, timeout) = looked_up(&mut guest, ROOT, "file");
    assert_eq!(timeout, crate::watch::WATCHED_TIMEOUT.as_secs());
    // A file with a second link outside: a change through that one is not seen.
    let (_, timeout) = looked_up(&mut guest, ROOT, "linked");
    assert_eq!(timeout, 1);
    let (sub, timeout) = looked_up(&mut guest, ROOT, "sub");
    assert_eq!(timeout, crate::watch::WATCHED_TIMEOUT.as_secs());
    let (inner, timeout) = looked_up(&mut guest, sub, "inner");
    assert_eq!(timeout, crate::watch::WATCHED_TIMEOUT.as_secs());

    std::fs::write(ws.join("file"), b"changed on the host").unwrap();
    guest.notified_until(|g| g.invalidated.contains(&file));
    // A new name: the directory's attributes (and with them its cached listing) go.
    std::fs::write(ws.join("sub/new"), b"").unwrap();
    guest.notified_until(|g| g.invalidated.contains(&sub));
    // A name the guest has that leads nowhere now, or elsewhere: its entry expires.
    std::fs::remove_file(ws.join("sub/inner")).unwrap();
    guest.notified_until(|g| {
        g.expired.contains(&(sub, b"inner".to_vec())) && g.invalidated.contains(&inner)
    });
    std::fs::rename(ws.join("file"), ws.join("sub/moved")).unwrap();
    guest.notified_until(|g| g.expired.contains(&(ROOT, b"file".to_vec())));
    // The guest's requests are still answered in between.
    assert_eq!(guest.lookup(sub, "moved"), Ok(file));
    // The guest's own rename comes back as events; the new name leads to the file the guest
    // has for it and does not expire (the old one does: the guest may hold it as absent).
    let reply = guest.ask(RENAME, sub, &[&sub.to_le_bytes(), b"moved\0again\0"]);
    assert_eq!(reply.error, 0);
    std::fs::write(ws.join("sentinel"), b"").unwrap();
    guest.notified_until(|g| g.expired.contains(&(ROOT, b"sentinel".to_vec())));
    assert!(guest.expired.contains(&(sub, b"moved".to_vec())));
    assert!(!guest.expired.contains(&(sub, b"again".to_vec())));
    // A name the watched directory does not have is cached as absent, and expires when the
    // host adds it.
    let reply = guest.ask(LOOKUP, sub, &[b"later\0"]);
    assert_eq!(reply.error, 0);
    let field = |at: usize| u64::from_le_bytes(reply.body[at..at + 8].try_into().unwrap());
    let watched = crate::watch::WATCHED_TIMEOUT.as_secs();
    assert_eq!((field(0), field(16)), (0, watched));
    std::fs::write(ws.join("sub/later"), b"").unwrap();
    guest.notified_until(|g| g.expired.contains(&(sub, b"later".to_vec())));
    guest.hang_up().unwrap();
}

#[test]
fn a_copy_on_write_share_watches_nothing_and_keeps_its_timeout() {
    let (_root, ws) = host_tree();
    let server = Arc::new(WorkspaceServer::new(&ws, WorkspaceMode::Cow, AGENT).unwrap());
    server.start_watch().unwrap();
    let mut guest = Guest::to(server);
    let (_, timeout) = looked_up(&mut guest, ROOT, "file");
    assert_eq!(timeout, 60);
    let (_, timeout) = looked_up(&mut guest, ROOT, "linked");
    assert_eq!(timeout, 60);
    guest.hang_up().unwrap();
}

/// The `open_flags` of an OPEN of `node` (read-only).
fn open_flags(guest: &mut Guest, node: u64) -> u32 {
    let reply = guest.ask(OPEN, node, &[&libc::O_RDONLY.to_le_bytes(), &[0; 4]]);
    assert_eq!(reply.error, 0);
    // fuse_open_out: fh, open_flags, padding.
    u32::from_le_bytes(reply.body[8..12].try_into().unwrap())
}

#[test]
fn a_file_whose_changes_reach_the_guest_keeps_its_cached_data_across_opens() {
    const KEEP_CACHE: u32 = 2;
    let (_root, ws) = host_tree();
    let live = Arc::new(WorkspaceServer::new(&ws, WorkspaceMode::Live, AGENT).unwrap());
    let mut guest = Guest::to(live);
    let (file, _) = looked_up(&mut guest, ROOT, "file");
    assert_eq!(open_flags(&mut guest, file) & KEEP_CACHE, KEEP_CACHE);
    // Changed through its other link, outside, no watch would see it: dropped at each open.
    let (linked, _) = looked_up(&mut guest, ROOT, "linked");
    assert_eq!(open_flags(&mut guest, linked) & KEEP_CACHE, 0);
    guest.hang_up().unwrap();
    let cow = Arc::new(WorkspaceServer::new(&ws, WorkspaceMode::Cow, AGENT).unwrap());
    let mut guest = Guest::to(cow);
    let (file, _) = looked_up(&mut guest, ROOT, "file");
    assert_eq!(open_flags(&mut guest, file) & KEEP_CACHE, 0);
    guest.hang_up().unwrap();
}
