//! Seed corpora: real inputs of each target, made with the project's own encoders (the same
//! values the unit tests use), so fuzzing starts from the valid forms and mutates outward.

use paddock_protocol::dns::{answer_a, encode_query, parse_query, tcp_frame, TYPE_A, TYPE_AAAA};
use paddock_protocol::{
    encode_frame, EgressHello, ExecRequest, ExitStatus, Request, ResolveAnswer, Response,
    ShutdownAction, UnixTime, WindowSize,
};
use paddock_vmm::devices::virtio::vsock::packet::{Header, OP_REQUEST, OP_RW, TYPE_STREAM};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Every target's seeds, by target name.
pub fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        ("protocol_frame", protocol_frame()),
        ("dns", dns()),
        ("egress_line", egress_line()),
        ("http_head", http_head()),
        ("http_body", http_body()),
        ("tls_client_hello", tls_client_hello()),
        ("vsock_connect", vsock_connect()),
        ("snapshot_state", snapshot_state()),
        ("vsock_device", vsock_device()),
        ("block_device", block_device()),
        ("legacy_devices", legacy_devices()),
        ("workspace_requests", workspace_requests()),
        ("workspace_state", workspace_state()),
        ("working_set", working_set()),
    ]
}

fn with_flags(flags: u8, bytes: Vec<u8>) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend(bytes);
    out
}

fn protocol_frame() -> Vec<Vec<u8>> {
    let size = WindowSize::FALLBACK;
    let requests = [
        Request::Ping { nonce: 7 },
        Request::Exec(ExecRequest {
            argv: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec![("A".into(), "b".into())],
            cwd: Some("/tmp".into()),
            ..ExecRequest::default()
        }),
        Request::Stdin {
            data: b"input".to_vec(),
        },
        Request::StdinClose,
        Request::Signal { signal: 2 },
        Request::Shutdown {
            action: ShutdownAction::PowerOff,
        },
        Request::Resume {
            wall_clock: UnixTime {
                secs: 1_700_000_000,
                nanos: 5,
            },
            entropy: vec![9; 64],
        },
        Request::Resize { size },
        Request::Detach,
        Request::Attach { pid: Some(3), size },
    ];
    let responses = [
        Response::Pong { nonce: 7 },
        Response::Started { pid: 42 },
        Response::Stdout {
            data: b"out".to_vec(),
        },
        Response::Stderr {
            data: b"err".to_vec(),
        },
        Response::Exited {
            status: ExitStatus::Code(3),
        },
        Response::ShuttingDown,
        Response::Detached { pid: 4 },
        Response::Attached { pid: 4 },
    ];
    let mut seeds = Vec::new();
    for request in &requests {
        let frame = encode_frame(request).expect("a request encodes");
        seeds.push(with_flags(3, frame.clone()));
        seeds.push(with_flags(2, frame));
    }
    for response in &responses {
        let frame = encode_frame(response).expect("a response encodes");
        seeds.push(with_flags(1, frame.clone()));
        seeds.push(with_flags(0, frame));
    }
    // Two frames in a row, as one connection carries them.
    let mut two = encode_frame(&responses[1]).expect("encodes");
    two.extend(encode_frame(&responses[4]).expect("encodes"));
    seeds.push(with_flags(1, two));
    seeds
}

fn dns() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (name, kind) in [
        ("example.com", TYPE_A),
        ("api.anthropic.com", TYPE_AAAA),
        ("a.b.c.d.e.f.example.org", TYPE_A),
        ("localhost", 16),
    ] {
        let query = encode_query(0x1234, name, kind).expect("a query encodes");
        if let Ok(parsed) = parse_query(&query) {
            seeds.push(answer_a(&parsed, Ipv4Addr::new(198, 18, 0, 1), 60));
        }
        seeds.push(tcp_frame(&query).expect("frames"));
        seeds.push(query);
    }
    seeds
}

fn egress_line() -> Vec<Vec<u8>> {
    let hellos = [
        EgressHello::Proxy,
        EgressHello::Transparent("93.184.216.34:443".parse().expect("an address")),
        EgressHello::Resolve("api.anthropic.com".into()),
    ];
    let answers = [
        ResolveAnswer::Address(Ipv4Addr::new(198, 18, 0, 9)),
        ResolveAnswer::NxDomain,
    ];
    let lines = hellos
        .iter()
        .map(EgressHello::encode)
        .chain(answers.iter().map(ResolveAnswer::encode));
    lines
        .flat_map(|line| [with_flags(1, line.clone()), with_flags(0, line)])
        .collect()
}

fn http_head() -> Vec<Vec<u8>> {
    [
        &b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n"[..],
        b"GET http://deb.debian.org/debian/dists/stable/Release HTTP/1.1\r\nHost: deb.debian.org\r\nUser-Agent: apt\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: PADDOCK-PLACEHOLDER\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: [::1]:8080\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n",
        b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n",
    ]
    .iter()
    .map(|head| head.to_vec())
    .collect()
}

fn http_body() -> Vec<Vec<u8>> {
    let body = |framing: u8, length: u32, sizes: [u8; 2], stream: &[u8]| {
        let mut seed = vec![framing];
        seed.extend_from_slice(&length.to_le_bytes()[..3]);
        seed.extend_from_slice(&sizes);
        seed.extend_from_slice(stream);
        seed
    };
    vec![
        body(0, 5, [255, 255], b"hello, and more"),
        body(1, 0, [0, 3], b"5\r\nhello\r\n0\r\n\r\n"),
        body(
            1,
            0,
            [7, 1],
            b"a;ext=1\r\n0123456789\r\n0\r\nx-trailer: v\r\n\r\nnext",
        ),
        body(2, 0, [100, 2], b"until the sender closes"),
    ]
}

fn tls_client_hello() -> Vec<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut seeds = Vec::new();
    for (name, alpn) in [
        ("api.anthropic.com", vec![b"http/1.1".to_vec()]),
        ("example.com", vec![]),
    ] {
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring has the default versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn;
        let server = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("a name");
        let mut connection =
            rustls::ClientConnection::new(Arc::new(config), server).expect("a client");
        let mut wire = Vec::new();
        while connection.wants_write() {
            connection.write_tls(&mut wire).expect("writes to a Vec");
        }
        seeds.push(with_flags(255, wire.clone()));
        seeds.push(with_flags(4, wire));
    }
    seeds
}

fn vsock_connect() -> Vec<Vec<u8>> {
    let header = Header {
        src_cid: 3,
        dst_cid: 2,
        src_port: 1025,
        dst_port: 1080,
        type_: TYPE_STREAM,
        op: OP_REQUEST,
        buf_alloc: 262_144,
        ..Header::default()
    };
    vec![
        b"CONNECT 1024\n".to_vec(),
        b"  CONNECT  4294967295 \r\n".to_vec(),
        header.to_bytes().to_vec(),
    ]
}

fn snapshot_state() -> Vec<Vec<u8>> {
    let envelope = |payload: &[u8]| {
        let mut file = vec![1u8];
        file.extend_from_slice(b"PDKSNAP\0");
        file.extend_from_slice(&paddock_vmm::snapshot::format::SNAPSHOT_VERSION.to_le_bytes());
        file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        file.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        file.extend_from_slice(payload);
        file
    };
    vec![
        envelope(&[]),
        envelope(&[2, 0, 0, 0, 0, 0, 0, 0, 1]),
        envelope(&[0; 256]),
    ]
}

fn working_set() -> Vec<Vec<u8>> {
    use paddock_vmm::snapshot::working_set::WorkingSet;
    let sets = [
        WorkingSet {
            memory_bytes: 4 << 20,
            memory_file: "memory-1-1.bin".into(),
            runs: vec![(0, 16), (100, 1), (1023, 1)],
        },
        WorkingSet {
            memory_bytes: 256 << 20,
            memory_file: "memory-18edf09033d6e6b2-1.bin".into(),
            runs: (0..64).map(|i| (i * 1000, 16)).collect(),
        },
    ];
    sets.iter()
        .flat_map(|set| [with_flags(0, set.encode()), with_flags(1, set.encode())])
        .collect()
}

fn workspace_state() -> Vec<Vec<u8>> {
    use paddock_workspace::saved::{SavedHandle, SavedNode, SavedState};
    let node = |id, parent, name: &[u8]| SavedNode {
        id,
        parent,
        name: name.to_vec(),
        lookups: 1,
        dev: 2049,
        ino: 1000 + id,
        file_type: 0o100_000,
    };
    let states = [
        SavedState {
            session: 7,
            capable: 0,
            read_only: false,
            next_node: 2,
            next_handle: 1,
            nodes: Vec::new(),
            handles: Vec::new(),
        },
        SavedState {
            session: 0x1234_5678_9abc_def0,
            capable: 0x3f_ffff,
            read_only: true,
            next_node: 10,
            next_handle: 4,
            nodes: vec![node(2, 1, b"src"), node(3, 2, b"main.rs"), node(5, 1, b"")],
            handles: vec![
                SavedHandle {
                    fh: 1,
                    node: 3,
                    flags: 0,
                    is_dir: false,
                },
                SavedHandle {
                    fh: 3,
                    node: 1,
                    flags: 0o200_000,
                    is_dir: true,
                },
            ],
        },
    ];
    states
        .iter()
        .filter_map(|state| state.encode().ok())
        .flat_map(|bytes| [with_flags(0, bytes.clone()), with_flags(1, bytes)])
        .collect()
}

fn vsock_device() -> Vec<Vec<u8>> {
    // Post receive buffers, send a connection request to guest-init's port from the guest, a
    // data packet, kick, run; then a host peer connecting.
    let request = Header {
        src_cid: 3,
        dst_cid: 2,
        src_port: 5000,
        dst_port: 1025,
        type_: TYPE_STREAM,
        op: OP_REQUEST,
        buf_alloc: 65_536,
        ..Header::default()
    };
    let data = Header {
        op: OP_RW,
        len: 5,
        ..request
    };
    let mut seed = Vec::new();
    for index in 0..4u8 {
        seed.extend_from_slice(&[6, 0, index, 0x00, 0x10, 0, 0]);
    }
    for (slot, header, payload) in [(0u8, request, &b""[..]), (1, data, &b"hello"[..])] {
        seed.extend_from_slice(&[3, slot]);
        seed.extend_from_slice(&header.to_bytes());
        seed.push(payload.len() as u8);
        seed.extend_from_slice(payload);
        seed.extend_from_slice(&[slot & 1, slot * 2]);
        seed.push(5);
    }
    seed.extend_from_slice(&[7, 13]);
    seed.extend_from_slice(b"CONNECT 1024\n");
    seed.push(5);
    vec![seed]
}

fn block_device() -> Vec<Vec<u8>> {
    // Writable and read-only disks: a read (type 0) of sector 2 into one segment, a write
    // (type 1) of sector 3 from one segment, a flush (type 4), a get-ID (type 8), then run.
    let request = |first: u8, kind: u8, sector: u64, writable: bool| {
        let mut op = vec![2, first, kind];
        op.extend_from_slice(&sector.to_le_bytes());
        op.push(1);
        op.extend_from_slice(&512u32.to_le_bytes());
        op.push(u8::from(writable));
        op.push(4);
        op.extend_from_slice(b"data");
        op
    };
    let mut seeds = Vec::new();
    for read_only in [0u8, 1] {
        let mut seed = vec![read_only];
        seed.extend(request(0, 0, 2, true));
        seed.extend(request(4, 1, 3, false));
        seed.extend(request(8, 4, 0, false));
        seed.extend(request(12, 8, 0, true));
        seed.push(4);
        seeds.push(seed);
    }
    seeds
}

fn legacy_devices() -> Vec<Vec<u8>> {
    // COM1: set DLAB and a divisor, clear it, write "hi\n" to THR, read LSR and IIR; then the
    // i8042's reset command (0xfe to port 0x64).
    let com1 = |offset: u8, write: bool, value: u8| vec![u8::from(!write), offset, 0, value];
    let mut seed = Vec::new();
    seed.extend(com1(3, true, 0x80));
    seed.extend(com1(0, true, 0x01));
    seed.extend(com1(3, true, 0x03));
    for byte in b"hi\n" {
        seed.extend(com1(0, true, *byte));
    }
    seed.extend(com1(5, false, 0));
    seed.extend(com1(2, false, 0));
    seed.extend([0x40, 4, 0, 0xfe]);
    vec![seed]
}

/// One FUSE request as the guest kernel sends it: header (uid and gid 1000) and body.
fn fuse_request(opcode: u32, unique: u64, node: u64, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(40 + body.len()).unwrap_or(u32::MAX);
    let mut m = Vec::new();
    m.extend_from_slice(&len.to_le_bytes());
    m.extend_from_slice(&opcode.to_le_bytes());
    m.extend_from_slice(&unique.to_le_bytes());
    m.extend_from_slice(&node.to_le_bytes());
    m.extend_from_slice(&1000u32.to_le_bytes());
    m.extend_from_slice(&1000u32.to_le_bytes());
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(body);
    m
}

fn workspace_requests() -> Vec<Vec<u8>> {
    const INIT: u32 = 26;
    const LOOKUP: u32 = 1;
    const GETATTR: u32 = 3;
    const OPEN: u32 = 14;
    const READ: u32 = 15;
    const MKNOD: u32 = 8;
    const CREATE: u32 = 35;
    const READDIR: u32 = 28;
    const OPENDIR: u32 = 27;
    let init = fuse_request(
        INIT,
        1,
        0,
        &[7, 0, 0, 0, 31, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    let lookup = |unique, name: &[u8]| fuse_request(LOOKUP, unique, 1, &[name, b"\0"].concat());
    let mut read = Vec::new();
    read.extend_from_slice(&1u64.to_le_bytes());
    read.extend_from_slice(&0u64.to_le_bytes());
    read.extend_from_slice(&4096u32.to_le_bytes());
    read.extend_from_slice(&[0; 20]);
    let mut o_path = libc::O_PATH.to_le_bytes().to_vec();
    o_path.extend_from_slice(&[0; 4]);
    let mut mknod = Vec::new();
    mknod.extend_from_slice(&0o010_644u32.to_le_bytes());
    mknod.extend_from_slice(&[0; 12]);
    mknod.extend_from_slice(b"fifo\0");
    let mut create = Vec::new();
    create.extend_from_slice(&0o2u32.to_le_bytes());
    create.extend_from_slice(&0o644u32.to_le_bytes());
    create.extend_from_slice(&[0; 8]);
    create.extend_from_slice(b"new\0");
    let requests = [
        init.clone(),
        [
            init.clone(),
            lookup(2, b"file"),
            fuse_request(GETATTR, 3, 2, &[0; 16]),
        ]
        .concat(),
        [
            init.clone(),
            lookup(2, b"file"),
            fuse_request(OPEN, 3, 2, &[0; 8]),
            fuse_request(READ, 4, 2, &read),
        ]
        .concat(),
        [
            init.clone(),
            lookup(2, b"linked"),
            fuse_request(OPEN, 3, 2, &[2, 0, 0, 0, 0, 0, 0, 0]),
        ]
        .concat(),
        // A handle whose flags a read cannot apply (O_PATH), then an open that would reuse its
        // descriptor's number had the read closed it, then the first handle again.
        [
            init.clone(),
            lookup(2, b"file"),
            fuse_request(OPEN, 3, 2, &o_path),
            fuse_request(READ, 4, 2, &read),
            fuse_request(OPEN, 5, 2, &[0; 8]),
            fuse_request(READ, 6, 2, &read),
        ]
        .concat(),
        [init.clone(), fuse_request(MKNOD, 2, 1, &mknod)].concat(),
        [init.clone(), fuse_request(CREATE, 2, 1, &create)].concat(),
        [
            init.clone(),
            lookup(2, b".."),
            fuse_request(OPENDIR, 3, 1, &[0; 8]),
            fuse_request(READDIR, 4, 1, &read),
        ]
        .concat(),
    ];
    // Each against the live share and the copy-on-write one.
    [0u8, 1]
        .iter()
        .flat_map(|&flags| requests.iter().map(move |r| with_flags(flags, r.clone())))
        .collect()
}
