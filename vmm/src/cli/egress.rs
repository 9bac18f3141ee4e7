//! What an agent session needs from the egress side: the placeholders of the stored secrets,
//! the proxy settings, and the CA certificate the sandbox's guest must trust.

use anyhow::Context;
use paddock_egress::secrets::SecretStore;
use paddock_vmm::agent;
use paddock_vmm::sandbox::egress::{EgressFiles, EgressRecord};
use paddock_vmm::sandbox::Sandboxes;

/// The session's egress environment and the CA certificate (PEM; empty without one).
pub struct SessionEgress {
    pub env: Vec<(String, String)>,
    pub ca_pem: String,
}

pub fn session(sandboxes: &Sandboxes, name: &str) -> anyhow::Result<SessionEgress> {
    if sandboxes.refresh_egress(name)? {
        eprintln!("paddock: the secrets changed; {name}'s egress proxy now has the new ones");
    }
    let files = EgressFiles::new(sandboxes.state_dir());
    let store = SecretStore::open(&files.secrets())?;
    let placeholders: Vec<(String, String)> = store
        .list()
        .into_iter()
        .filter_map(|s| s.env_var.map(|var| (var.to_string(), s.placeholder)))
        .collect();
    let paths = sandboxes.paths(name)?;
    let ca_pem = match EgressRecord::read(&paths.dir) {
        Some(record) => {
            let path = files.ca_dir(&record.ca).join("ca.pem");
            std::fs::read_to_string(&path).with_context(|| {
                format!("reading the sandbox's CA certificate {}", path.display())
            })?
        }
        None => String::new(),
    };
    Ok(SessionEgress {
        env: agent::egress_environment(&placeholders),
        ca_pem,
    })
}
