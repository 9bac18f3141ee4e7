//! Tests of `names`.
use super::*;

fn map_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("names.json")
}

#[test]
fn addresses_are_stable_usable_and_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let names = StableNames::open(&map_in(&dir)).unwrap();
    let a = names.address_for("api.anthropic.com").unwrap();
    let b = names.address_for("github.com").unwrap();
    assert_ne!(a, b);
    for address in [a, b] {
        assert!(is_stable(IpAddr::V4(address)));
        assert!(![0, 255].contains(&address.octets()[3]));
    }
    assert_eq!(names.address_for("api.anthropic.com").unwrap(), a);
    assert_eq!(names.name_for(a).as_deref(), Some("api.anthropic.com"));
    assert_eq!(names.name_for(Ipv4Addr::new(198, 18, 3, 3)), None);
    assert_eq!(names.name_for(Ipv4Addr::new(10, 0, 0, 1)), None);
}

#[test]
fn address_is_the_hash_choice_in_a_fresh_map() {
    // Two unrelated maps agree on a name's address: it comes from the name alone.
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let one = StableNames::open(&map_in(&first)).unwrap();
    let other = StableNames::open(&map_in(&second)).unwrap();
    other.address_for("unrelated.example").unwrap();
    assert_eq!(
        one.address_for("pypi.org").unwrap(),
        other.address_for("pypi.org").unwrap()
    );
}

#[test]
fn a_second_process_sees_the_first_ones_names() {
    let dir = tempfile::tempdir().unwrap();
    let first = StableNames::open(&map_in(&dir)).unwrap();
    let second = StableNames::open(&map_in(&dir)).unwrap();
    let address = first.address_for("example.org").unwrap();
    // `second` read the map before the name existed: a lookup by address rereads it.
    assert_eq!(second.name_for(address).as_deref(), Some("example.org"));
    assert_eq!(second.address_for("example.org").unwrap(), address);
    // A restarted proxy reads the same map.
    let restarted = StableNames::open(&map_in(&dir)).unwrap();
    assert_eq!(restarted.cached_address("example.org"), Some(address));
}

#[test]
fn collisions_probe_to_the_next_free_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = map_in(&dir);
    let names = StableNames::open(&path).unwrap();
    let wanted = names.address_for("wanted.example").unwrap();
    // Another name already holds the address `wanted.example` hashes to.
    let squatted = MapFile {
        names: BTreeMap::from([("squatter.example".to_string(), wanted)]),
    };
    write_map(&path, &squatted).unwrap();
    let fresh = StableNames::open(&path).unwrap();
    let probed = fresh.address_for("wanted.example").unwrap();
    assert_ne!(probed, wanted);
    assert!(is_stable(IpAddr::V4(probed)));
    assert_eq!(fresh.name_for(wanted).as_deref(), Some("squatter.example"));
    assert_eq!(fresh.name_for(probed).as_deref(), Some("wanted.example"));
}

#[test]
fn concurrent_writers_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = map_in(&dir);
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let path = path.clone();
            std::thread::spawn(move || {
                // One StableNames per thread: like separate proxy processes.
                let names = StableNames::open(&path).unwrap();
                (0..50)
                    .map(|i| {
                        let name = format!("n{i}-t{thread}.example");
                        (names.address_for(&name).unwrap(), name)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen = HashMap::new();
    for thread in threads {
        for (address, name) in thread.join().unwrap() {
            assert_eq!(seen.insert(address, name), None, "address handed out twice");
        }
    }
    let map = StableNames::open(&path).unwrap();
    for (address, name) in seen {
        assert_eq!(map.name_for(address), Some(name));
    }
}

#[test]
fn bad_names_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = map_in(&dir);
    let names = StableNames::open(&path).unwrap();
    assert!(matches!(
        names.address_for(""),
        Err(NamesError::BadName { len: 0 })
    ));
    assert!(matches!(
        names.address_for(&"a".repeat(300)),
        Err(NamesError::BadName { len: 300 })
    ));
    fs::write(&path, b"{not json").unwrap();
    assert!(matches!(
        StableNames::open(&path),
        Err(NamesError::Malformed { .. })
    ));
    // An address outside the range in a hand-edited map is ignored.
    fs::write(&path, br#"{"names":{"evil.example":"127.0.0.1"}}"#).unwrap();
    let names = StableNames::open(&path).unwrap();
    assert_eq!(names.cached_address("evil.example"), None);
    assert_eq!(names.name_for(Ipv4Addr::LOCALHOST), None);
}

#[test]
fn the_map_directory_is_created_and_the_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egress").join("names.json");
    let names = StableNames::open(&path).unwrap();
    names.address_for("example.org").unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn an_unknown_address_rereads_the_map_only_when_it_changed() {
    let dir = tempfile::tempdir().unwrap();
    let names = StableNames::open(&map_in(&dir)).unwrap();
    let unknown = Ipv4Addr::new(198, 19, 255, 254);
    // Missing file: nothing to read, however often asked.
    assert_eq!(names.name_for(unknown), None);
    assert_eq!(names.rereads(), 0);

    names.address_for("a.example").unwrap();
    let after_write = names.rereads();
    for _ in 0..100 {
        assert_eq!(names.name_for(unknown), None);
    }
    assert_eq!(
        names.rereads(),
        after_write,
        "misses are answered from memory"
    );

    // Another proxy hands out an address: the changed file is read once, then known.
    let other = StableNames::open(&map_in(&dir)).unwrap();
    let theirs = other.address_for("b.example").unwrap();
    assert_eq!(names.name_for(theirs).as_deref(), Some("b.example"));
    assert_eq!(names.rereads(), after_write + 1);
    assert_eq!(names.name_for(unknown), None);
    assert_eq!(names.name_for(theirs).as_deref(), Some("b.example"));
    assert_eq!(names.rereads(), after_write + 1);
}
