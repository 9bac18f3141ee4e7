//! Parsing of paddock's kernel command line parameters.

use super::*;

fn parsed(cmdline: &str) -> BootParams {
    let (params, errors) = parse(cmdline);
    assert!(errors.is_empty(), "{errors:?}");
    params
}

#[test]
fn no_parameters_is_the_minimal_profile() {
    let params = parsed("console=ttyS0 reboot=k panic=-1 quiet\n");
    assert_eq!(
        params,
        BootParams {
            root: None,
            engine: EngineChoice::None,
            engine_timeout: DEFAULT_ENGINE_TIMEOUT,
        }
    );
}

#[test]
fn a_root_defaults_to_the_docker_engine() {
    let params = parsed("console=ttyS0 paddock.root=/dev/vda\n");
    assert_eq!(params.root.as_deref(), Some("/dev/vda"));
    assert_eq!(params.engine, EngineChoice::Docker);
    assert_eq!(params.engine_timeout, Duration::from_secs(180));
}

#[test]
fn engine_and_timeout_are_honoured() {
    let params = parsed("paddock.root=/dev/vdb paddock.engine=none paddock.engine_timeout=30");
    assert_eq!(params.root.as_deref(), Some("/dev/vdb"));
    assert_eq!(params.engine, EngineChoice::None);
    assert_eq!(params.engine_timeout, Duration::from_secs(30));
    // An engine without a root is what was asked for (it will fail visibly, not silently).
    assert_eq!(parsed("paddock.engine=docker").engine, EngineChoice::Docker);
}

#[test]
fn the_last_occurrence_wins_and_init_arguments_are_ignored() {
    let params = parsed("paddock.engine_timeout=5 paddock.engine_timeout=7 -- paddock.root=/dev/x");
    assert_eq!(params.engine_timeout, Duration::from_secs(7));
    assert_eq!(params.root, None);
}

#[test]
fn bad_values_are_reported_and_defaults_kept() {
    let (params, errors) = parse(
        "paddock.engine=podman paddock.engine_timeout=0 paddock.engine_timeout=abc \
         paddock.root=vda paddock.engine_timeout=99999999",
    );
    assert_eq!(
        params,
        BootParams {
            root: None,
            engine: EngineChoice::None,
            engine_timeout: DEFAULT_ENGINE_TIMEOUT,
        }
    );
    assert_eq!(
        errors,
        vec![
            BootParamError::UnknownEngine {
                value: "podman".into()
            },
            BootParamError::BadEngineTimeout { value: "0".into() },
            BootParamError::BadEngineTimeout {
                value: "abc".into()
            },
            BootParamError::BadRoot {
                value: "vda".into()
            },
            BootParamError::BadEngineTimeout {
                value: "99999999".into()
            },
        ]
    );
}

#[test]
fn over_long_values_are_refused() {
    let cmdline = format!("paddock.root=/{}", "a".repeat(MAX_VALUE_LEN));
    let (params, errors) = parse(&cmdline);
    assert_eq!(params.root, None);
    assert_eq!(
        errors,
        vec![BootParamError::TooLong {
            name: "paddock.root"
        }]
    );
}

#[test]
fn similar_names_are_not_paddock_parameters() {
    let params = parsed("root=/dev/vda xpaddock.root=/dev/vdb paddock.rootfs=/dev/vdc");
    assert_eq!(params.root, None);
}
