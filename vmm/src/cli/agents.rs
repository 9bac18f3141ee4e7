//! `paddock agents`: the coding agents the agent image holds and their versions, read from the
//! image (its trailer's agent manifest) without booting a VM.

use super::AgentsArgs;
use paddock_vmm::artifacts::{image_agents, Profile};
use rootfs_builder::disk_image::AgentManifest;
use std::path::Path;

pub fn agents(args: AgentsArgs) -> anyhow::Result<i32> {
    let image = Profile::Agent
        .artifacts(None, None, args.image)
        .image
        .expect("the agent profile boots from an image");
    let agents = image_agents(&image)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json(&image, &agents))?);
    } else {
        print!("{}", table(&agents));
    }
    Ok(0)
}

/// `AGENT COMMAND VERSION` columns, one agent a line.
fn table(agents: &AgentManifest) -> String {
    let width = |column: fn(&rootfs_builder::disk_image::AgentEntry) -> &str, title: &str| {
        agents
            .entries()
            .iter()
            .map(|e| column(e).len())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let name_w = width(|e| &e.name, "AGENT");
    let command_w = width(|e| &e.command, "COMMAND");
    let mut out = format!("{:<name_w$}  {:<command_w$}  VERSION\n", "AGENT", "COMMAND");
    for e in agents.entries() {
        out.push_str(&format!(
            "{:<name_w$}  {:<command_w$}  {}\n",
            e.name, e.command, e.version
        ));
    }
    out
}

/// `{"image": PATH, "agents": [{"name", "command", "version"}, ...]}`.
fn json(image: &Path, agents: &AgentManifest) -> serde_json::Value {
    let list: Vec<serde_json::Value> = agents
        .entries()
        .iter()
        .map(|e| {
            serde_json::json!({
                "name": e.name,
                "command": e.command,
                "version": e.version,
            })
        })
        .collect();
    serde_json::json!({ "image": image, "agents": list })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rootfs_builder::disk_image;
    use std::io::Write;

    /// A small agent image in a temporary directory, as the image build writes it.
    fn test_image(dir: &Path) -> std::path::PathBuf {
        let mut agents = AgentManifest::new();
        agents.push("claude", "claude", "2.1.332").unwrap();
        agents.push("gemini", "gemini", "0.61.0").unwrap();
        agents.push("codex", "codex", "0.171.0").unwrap();
        agents.push("shell", "bash", "5.2.15(1)-release").unwrap();
        let path = dir.join("rootfs-agent.img");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        file.write_all(&[0u8; 4096 * 3]).unwrap();
        disk_image::write_trailer_with_agents(&mut file, 4096 * 3, "agent", &agents).unwrap();
        path
    }

    #[test]
    fn lists_the_agents_of_a_test_image() {
        let dir = tempfile::tempdir().unwrap();
        let image = test_image(dir.path());
        let agents = image_agents(&image).unwrap();
        assert_eq!(
            table(&agents),
            "AGENT   COMMAND  VERSION\n\
             claude  claude   2.1.332\n\
             gemini  gemini   0.61.0\n\
             codex   codex    0.171.0\n\
             shell   bash     5.2.15(1)-release\n"
        );
        let value = json(&image, &agents);
        assert_eq!(value["image"], image.display().to_string());
        let names: Vec<&str> = value["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["claude", "gemini", "codex", "shell"]);
        assert_eq!(value["agents"][2]["version"], "0.171.0");
        assert_eq!(value["agents"][3]["command"], "bash");
    }

    #[test]
    fn the_command_reads_the_image_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let image = test_image(dir.path());
        let args = AgentsArgs {
            image: Some(image),
            json: true,
        };
        assert_eq!(agents(args).unwrap(), 0);
        let missing = AgentsArgs {
            image: Some(dir.path().join("missing.img")),
            json: false,
        };
        let err = agents(missing).unwrap_err();
        assert!(
            format!("{err:#}").contains("cargo xtask rootfs --profile agent"),
            "{err:#}"
        );
    }
}
