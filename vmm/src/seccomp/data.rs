//! The filter data's own layout (a `common` list, then one list per thread kind) turned into
//! seccompiler's JSON, one filter per thread kind with `common` prepended. Shared by the build
//! script, which compiles the filters into the binary, and the unit tests.

/// The thread kinds' names in the filter data, in order.
pub const KINDS: [&str; 5] = ["vmm", "events", "vcpu", "workspace", "egress"];

/// Kinds whose unlisted syscalls fail with `EPERM` when enforcing, instead of killing the
/// process: the egress proxy, which runs the C library's resolver (whose syscalls vary with the
/// host's configuration), and where a miss must fail one connection, not every one.
pub const REFUSING_KINDS: [&str; 1] = ["egress"];

/// Why the filter data cannot be used.
#[derive(Debug)]
pub enum DataError {
    /// Not JSON.
    Json(serde_json::Error),
    /// A thread kind has no list.
    Missing(&'static str),
}

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataError::Json(e) => write!(f, "the seccomp filter data is not JSON: {e}"),
            DataError::Missing(kind) => write!(f, "the seccomp filter data has no {kind:?} list"),
        }
    }
}

impl std::error::Error for DataError {}

/// seccompiler's JSON for `data`, refused syscalls meeting `mismatch_action` (`kill_process`,
/// `log`; `kill_process` is `EPERM` for the [`REFUSING_KINDS`]).
pub fn seccompiler_json(data: &str, mismatch_action: &str) -> Result<String, DataError> {
    let doc: serde_json::Value = serde_json::from_str(data).map_err(DataError::Json)?;
    let common = doc
        .get("common")
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    let mut filters = serde_json::Map::new();
    for kind in KINDS {
        let own = doc
            .get(kind)
            .and_then(|rules| rules.as_array())
            .ok_or(DataError::Missing(kind))?;
        let mut rules = common.clone();
        rules.extend(own.iter().cloned());
        filters.insert(
            kind.to_string(),
            serde_json::json!({
                "mismatch_action": if mismatch_action == "kill_process" && REFUSING_KINDS.contains(&kind) {
                    serde_json::json!({"errno": 1})
                } else {
                    serde_json::json!(mismatch_action)
                },
                "match_action": "allow",
                "filter": rules,
            }),
        );
    }
    Ok(serde_json::Value::Object(filters).to_string())
}
