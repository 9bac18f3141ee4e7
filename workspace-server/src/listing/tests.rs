//! Listings read through the real passthrough on a scratch directory, with entries removed on
//! the host between reads as `rm -rf` removes them.

use super::*;
use fuse_backend_rs::passthrough::{Config, PassthroughFs};
use std::collections::BTreeSet;

const ROOT: u64 = 1;

fn passthrough(dir: &std::path::Path) -> PassthroughFs {
    let fs = PassthroughFs::<()>::new(Config {
        root_dir: dir.to_str().unwrap().to_string(),
        xattr: false,
        do_import: true,
        ..Config::default()
    })
    .unwrap();
    fs.import().unwrap();
    fs
}

fn scratch(files: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..files {
        std::fs::write(dir.path().join(format!("f{i:04}")), b"x").unwrap();
    }
    dir
}

fn open_root(fs: &PassthroughFs) -> u64 {
    let (handle, _) = fs.opendir(&Context::new(), ROOT, 0).unwrap();
    handle.unwrap()
}

/// Reads the listing in pieces of `per_read` entries, removing each piece's files on the host
/// before the next read; returns every name served.
fn read_removing(fs: &PassthroughFs, dir: &std::path::Path, plus: bool) -> Vec<String> {
    let listings = Listings::default();
    let ctx = Context::new();
    let handle = open_root(fs);
    let mut served = Vec::new();
    let mut offset = 0;
    loop {
        let mut piece: Vec<(String, u64)> = Vec::new();
        let mut take = |dir_entry: DirEntry| {
            if piece.len() == 7 {
                return Ok(0);
            }
            piece.push((
                String::from_utf8(dir_entry.name.to_vec()).unwrap(),
                dir_entry.offset,
            ));
            Ok(1)
        };
        if plus {
            let lookup = |name: &std::ffi::CStr| fs.lookup(&ctx, ROOT, name);
            let mut take_plus = |dir_entry: DirEntry, entry: Entry| {
                let dot = dir_entry.name == b"." || dir_entry.name == b"..";
                assert_eq!(entry.inode == 0, dot, "node of {:?}", dir_entry.name);
                take(dir_entry)
            };
            listings
                .readdirplus(
                    fs,
                    &ctx,
                    ROOT,
                    handle,
                    4096,
                    offset,
                    &lookup,
                    &mut take_plus,
                )
                .unwrap();
        } else {
            listings
                .readdir(fs, &ctx, ROOT, handle, 4096, offset, &mut take)
                .unwrap();
        }
        let Some(&(_, last)) = piece.last() else {
            break;
        };
        offset = last;
        for (name, _) in &piece {
            if name.starts_with('f') {
                std::fs::remove_file(dir.join(name)).unwrap();
            }
            served.push(name.clone());
        }
    }
    listings.release(handle);
    served
}

fn assert_every_file_once(served: &[String], files: usize) {
    let unique: BTreeSet<&String> = served.iter().collect();
    assert_eq!(unique.len(), served.len(), "an entry was served twice");
    // (The passthrough lists no `.` or `..`.)
    let missing: Vec<String> = (0..files)
        .map(|i| format!("f{i:04}"))
        .filter(|name| !unique.contains(name))
        .collect();
    assert!(missing.is_empty(), "never served: {missing:?}");
    assert_eq!(unique.len(), files);
}

#[test]
fn every_entry_is_served_once_while_the_directory_is_emptied() {
    let dir = scratch(500);
    let fs = passthrough(dir.path());
    let served = read_removing(&fs, dir.path(), false);
    assert_every_file_once(&served, 500);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn readdirplus_serves_every_entry_once_with_a_node_for_each_file() {
    let dir = scratch(300);
    let fs = passthrough(dir.path());
    let served = read_removing(&fs, dir.path(), true);
    assert_every_file_once(&served, 300);
}

#[test]
fn an_entry_removed_before_it_is_served_is_skipped_by_readdirplus() {
    let dir = scratch(3);
    let fs = passthrough(dir.path());
    let listings = Listings::default();
    let ctx = Context::new();
    let handle = open_root(&fs);
    let lookup = |name: &std::ffi::CStr| fs.lookup(&ctx, ROOT, name);
    // The first read copies the listing; f0001 goes before the rest is served.
    let mut first = Vec::new();
    listings
        .readdirplus(&fs, &ctx, ROOT, handle, 4096, 0, &lookup, &mut |d, _| {
            if first.len() == 1 {
                return Ok(0);
            }
            first.push(d.offset);
            Ok(1)
        })
        .unwrap();
    std::fs::remove_file(dir.path().join("f0001")).unwrap();
    let mut rest = Vec::new();
    listings
        .readdirplus(
            &fs,
            &ctx,
            ROOT,
            handle,
            4096,
            first[0],
            &lookup,
            &mut |d, _| {
                rest.push(String::from_utf8(d.name.to_vec()).unwrap());
                Ok(1)
            },
        )
        .unwrap();
    assert!(!rest.contains(&"f0001".to_string()), "{rest:?}");
    assert!(rest.contains(&"f0002".to_string()), "{rest:?}");
}

#[test]
fn a_listing_past_the_budget_is_not_copied_and_the_passthrough_serves_it() {
    let dir = scratch(50);
    let fs = passthrough(dir.path());
    let handle = open_root(&fs);
    let ctx = Context::new();
    assert!(read_whole(&fs, &ctx, ROOT, handle, 100).unwrap().is_none());
    let whole = read_whole(&fs, &ctx, ROOT, handle, MAX_HELD_BYTES)
        .unwrap()
        .unwrap();
    assert_eq!(whole.len(), 50);
}

#[test]
fn released_and_cleared_listings_give_their_bytes_back() {
    let dir = scratch(20);
    let fs = passthrough(dir.path());
    let listings = Listings::default();
    let ctx = Context::new();
    let handle = open_root(&fs);
    listings
        .readdir(&fs, &ctx, ROOT, handle, 4096, 0, &mut |_| Ok(1))
        .unwrap();
    assert!(listings.lock().bytes > 0);
    listings.release(handle);
    assert_eq!(listings.lock().bytes, 0);
    listings
        .readdir(&fs, &ctx, ROOT, handle, 4096, 0, &mut |_| Ok(1))
        .unwrap();
    listings.clear();
    assert_eq!(listings.lock().bytes, 0);
    assert!(listings.lock().by_handle.is_empty());
}
