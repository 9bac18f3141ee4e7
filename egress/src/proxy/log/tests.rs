//! Tests of `log`.
use std::time::Duration;

use super::*;

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

#[test]
fn times_are_rfc3339_utc() {
    assert_eq!(rfc3339_utc(at(0)), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339_utc(at(951_782_400)), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339_utc(at(1_709_251_199)), "2024-02-29T23:59:59Z");
    assert_eq!(rfc3339_utc(at(1_735_689_600)), "2025-01-01T00:00:00Z");
    assert_eq!(rfc3339_utc(at(4_102_444_800)), "2100-01-01T00:00:00Z");
    assert_eq!(
        rfc3339_utc(UNIX_EPOCH - Duration::from_secs(5)),
        "1970-01-01T00:00:00Z"
    );
}

#[test]
fn a_line_is_one_json_object_with_every_field() {
    let mut entry = EgressLogEntry::new(
        "box",
        EgressPath::Connect,
        "example.com",
        443,
        Verdict::Allow,
    )
    .with_address("93.184.216.34:443".parse().unwrap());
    entry.rule = Some("**.example.com".into());
    entry.bytes_up = 10;
    entry.bytes_down = 20;
    let line = egress_log_line(&entry, at(1_735_689_600));
    assert!(line.ends_with('\n'));
    assert_eq!(line.matches('\n').count(), 1);
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "time": "2025-01-01T00:00:00Z", "sandbox": "box", "host": "example.com",
            "port": 443, "path": "connect", "rule": "**.example.com", "verdict": "allow",
            "reason": null, "address": "93.184.216.34:443", "bytes_up": 10, "bytes_down": 20,
        })
    );
}

#[test]
fn hostile_hosts_stay_on_one_line() {
    let entry = EgressLogEntry::new("box", EgressPath::Http, "a\nb\"c", 80, Verdict::Deny);
    let line = egress_log_line(&entry, at(0));
    assert_eq!(line.matches('\n').count(), 1);
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["host"], "a\nb\"c");
    assert_eq!(value["verdict"], "deny");
}

#[test]
fn records_append_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egress.log");
    std::fs::write(&path, "earlier\n").unwrap();
    let log = EgressLog::open(&path).unwrap();
    for port in [1, 2, 3] {
        log.record(&EgressLogEntry::new(
            "box",
            EgressPath::Dns,
            "x.test",
            port,
            Verdict::Deny,
        ));
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0], "earlier");
    for (line, port) in lines[1..].iter().zip([1, 2, 3]) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["port"], port);
        assert_eq!(value["path"], "dns");
    }
}

#[test]
fn a_burst_of_denials_is_cut_short_and_summed_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egress.log");
    let log = EgressLog::open(&path).unwrap();
    let start = Instant::now();
    let denial = EgressLogEntry::new("box", EgressPath::Transparent, "", 0, Verdict::Deny);
    let allowed = EgressLogEntry::new("box", EgressPath::Connect, "a.test", 443, Verdict::Allow);
    for _ in 0..100 {
        log.record_at(&denial, start);
    }
    log.record_at(&allowed, start);
    let lines = |path: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    let written = lines(&path);
    assert_eq!(written.len(), 21, "20 denials and the allowed connection");
    assert_eq!(written[20]["verdict"], "allow");
    assert!(written.iter().all(|line| line.get("suppressed").is_none()));

    // The next line after the window passed brings the summary first.
    log.record_at(&allowed, start + Duration::from_secs(1));
    let written = lines(&path);
    assert_eq!(written.len(), 23);
    assert_eq!(written[21]["verdict"], "deny");
    assert_eq!(written[21]["reason"], "rate-limited");
    assert_eq!(written[21]["suppressed"], 80);
    assert_eq!(written[21]["sandbox"], "box");
    assert_eq!(written[22]["verdict"], "allow");

    // A summary still pending when the log closes is written then.
    for _ in 0..25 {
        log.record_at(&denial, start + Duration::from_secs(2));
    }
    drop(log);
    let written = lines(&path);
    assert_eq!(written.len(), 23 + 20 + 1);
    assert_eq!(written.last().unwrap()["suppressed"], 5);
}

#[test]
fn a_full_log_is_rotated_once_even_with_two_writers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    let first = EgressLog::open_rotating_at(&path, 4096).unwrap();
    let second = EgressLog::open_rotating_at(&path, 4096).unwrap();
    let entry =
        |host: &str| EgressLogEntry::new("box", EgressPath::Connect, host, 443, Verdict::Allow);
    let mut lines = 0;
    while !rotated_log(&path).exists() {
        first.record(&entry("a.example"));
        lines += 1;
        assert!(lines < 1000, "never rotated");
    }
    // The line that found the log full starts the new one.
    let rotated = std::fs::read_to_string(rotated_log(&path)).unwrap();
    assert_eq!(rotated.lines().count(), lines - 1);
    assert!(rotated.len() >= 4096);
    // The second writer still holds the rotated file: its next line goes to the new log, and
    // the rotated one is not moved again.
    second.record(&entry("b.example"));
    first.record(&entry("c.example"));
    let current = std::fs::read_to_string(&path).unwrap();
    assert!(
        current.contains("b.example") && current.contains("c.example"),
        "{current}"
    );
    assert_eq!(
        std::fs::read_to_string(rotated_log(&path)).unwrap(),
        rotated
    );
}
