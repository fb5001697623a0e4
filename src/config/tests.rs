//! One test per kind of configuration error, each asserting the message and where it points.

use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_config(
        text,
        ConfigSource::File("ccscope.toml".into()),
        Path::new("/stack"),
    )
}

/// The single diagnostic `text` produces: (line, column, message, hint).
fn only_error(text: &str) -> (usize, usize, String, Option<String>) {
    match parse(text) {
        Err(ConfigError::Invalid { diagnostics }) => {
            assert_eq!(
                diagnostics.len(),
                1,
                "expected one diagnostic, got {diagnostics:#?}"
            );
            let d = &diagnostics[0];
            assert_eq!(d.location.file, "ccscope.toml");
            (
                d.location.line,
                d.location.column,
                d.message.clone(),
                d.hint.clone(),
            )
        }
        Err(other) => panic!("expected an invalid-config error, got {other}"),
        Ok(_) => panic!("expected an error, the config validated:\n{text}"),
    }
}

const HEAD: &str = "[project]\nname = \"demo\"\n";

#[test]
fn the_example_profile_is_valid_and_layered() {
    let config = parse(profiles::EXAMPLE).unwrap();
    assert_eq!(config.project.name, "context-cleaner");
    assert_eq!(
        graph::start_layers(&config),
        vec![
            vec!["clickhouse"],
            vec!["telemetry_collector"],
            vec!["bridge_sync", "dashboard"]
        ]
    );
    let dashboard = &config.services["dashboard"];
    assert_eq!(dashboard.ports, vec![8110]);
    assert_eq!(dashboard.stop_timeout.0, std::time::Duration::from_secs(5));
    assert_eq!(
        dashboard.restart.policy,
        RestartMode::OnFailure,
        "inherited from [defaults]"
    );
    assert_eq!(dashboard.limits.memory_bytes, Some(512 << 20));
    assert_eq!(
        dashboard.depends_on["telemetry_collector"],
        DependencyCondition::Started
    );
    assert!(matches!(
        config.services["clickhouse"].launch,
        Launch::Docker(_)
    ));
    assert!(config.services["bridge_sync"].optional);
}

#[test]
fn unknown_key_suggests_the_closest() {
    let (line, col, msg, hint) = only_error(&format!("{HEAD}[services.web]\ncomand = [\"x\"]\n"));
    assert_eq!((line, col), (4, 1));
    assert_eq!(msg, "unknown key `comand` in [services.web]");
    assert_eq!(hint.as_deref(), Some("did you mean `command`?"));
}

#[test]
fn unknown_top_level_table_is_named() {
    let (line, _, msg, hint) = only_error(&format!("{HEAD}[service.web]\ncommand = [\"x\"]\n"));
    assert_eq!(line, 3);
    assert!(msg.starts_with("unknown key `service`"), "{msg}");
    assert_eq!(hint.as_deref(), Some("did you mean `services`?"));
}

#[test]
fn unknown_condition_suggests_the_closest() {
    let text = format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\ndepends_on = {{ b = \"helthy\" }}\n[services.b]\ncommand = [\"y\"]\n"
    );
    let (line, col, msg, hint) = only_error(&text);
    assert_eq!((line, col), (5, 20));
    assert_eq!(msg, "unknown value `helthy` in [services.a]");
    assert_eq!(hint.as_deref(), Some("did you mean `healthy`?"));
}

#[test]
fn missing_command() {
    let (line, col, msg, _) = only_error(&format!("{HEAD}[services.web]\nports = [1]\n"));
    assert_eq!((line, col), (3, 1));
    assert_eq!(msg, "service `web` has no command");
}

#[test]
fn empty_command() {
    let (line, col, msg, _) = only_error(&format!("{HEAD}[services.web]\ncommand = []\n"));
    assert_eq!((line, col), (4, 11));
    assert_eq!(msg, "the command of service `web` is empty");
}

#[test]
fn command_and_shell_together() {
    let (_, _, msg, _) = only_error(&format!(
        "{HEAD}[services.web]\ncommand = [\"x\"]\nshell = \"x\"\n"
    ));
    assert_eq!(msg, "service `web` has both `command` and `shell`");
}

#[test]
fn unknown_dependency_suggests_a_service() {
    let text = format!(
        "{HEAD}[services.web]\ncommand = [\"x\"]\ndepends_on = [\"clickhous\"]\n[services.clickhouse]\ncommand = [\"y\"]\n"
    );
    let (line, col, msg, hint) = only_error(&text);
    assert_eq!((line, col), (5, 15));
    assert_eq!(
        msg,
        "service `web` depends on `clickhous`, which is not a service"
    );
    assert_eq!(hint.as_deref(), Some("did you mean `clickhouse`?"));
}

#[test]
fn dependency_cycle_is_printed_as_a_cycle() {
    let text = format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\ndepends_on = [\"b\"]\n[services.b]\ncommand = [\"y\"]\ndepends_on = [\"c\"]\n[services.c]\ncommand = [\"z\"]\ndepends_on = [\"a\"]\n"
    );
    let (line, col, msg, _) = only_error(&text);
    assert_eq!(msg, "dependency cycle: a → b → c → a");
    assert_eq!((line, col), (5, 15), "points at a's dependency on b");
}

#[test]
fn self_dependency_is_a_cycle() {
    let (_, _, msg, _) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\ndepends_on = [\"a\"]\n"
    ));
    assert_eq!(msg, "dependency cycle: a → a");
}

#[test]
fn two_services_declaring_one_port() {
    let text = format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nports = [8110]\n[services.b]\ncommand = [\"y\"]\nports = [9000, 8110]\n"
    );
    let (line, col, msg, _) = only_error(&text);
    assert_eq!((line, col), (8, 16));
    assert_eq!(msg, "port 8110 is declared by both `a` and `b`");
}

#[test]
fn a_docker_host_port_counts_as_declared() {
    let text = format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nports = [8123]\n[services.b.docker]\nimage = \"ch\"\nports = [\"8123:8123\"]\n"
    );
    let (_, _, msg, _) = only_error(&text);
    assert_eq!(msg, "port 8123 is declared by both `a` and `b`");
}

#[test]
fn out_of_range_port() {
    let (_, col, msg, _) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nports = [70000]\n"
    ));
    assert_eq!(col, 10);
    assert_eq!(msg, "port 70000 is out of range");
}

#[test]
fn unparsable_duration() {
    let (line, col, msg, _) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nstop_timeout = \"10 parsecs\"\n"
    ));
    assert_eq!((line, col), (5, 16));
    assert!(
        msg.starts_with("invalid duration \"10 parsecs\": `parsecs` is not a unit"),
        "{msg}"
    );
}

#[test]
fn a_duration_without_unit() {
    let (_, _, msg, _) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nstop_timeout = 10\n"
    ));
    assert!(msg.contains("write \"10s\""), "{msg}");
}

#[test]
fn invalid_regex() {
    let text = format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\ndiscover = {{ cmdline = [\"ok\", \"(unclosed\"] }}\n"
    );
    let (line, col, msg, _) = only_error(&text);
    assert_eq!((line, col), (5, 31));
    assert_eq!(msg, "invalid regex \"(unclosed\": unclosed group");
}

#[test]
fn invalid_log_probe_regex() {
    let (_, _, msg, _) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nready = {{ log = \"[\" }}\n"
    ));
    assert!(msg.starts_with("invalid regex \"[\""), "{msg}");
}

#[test]
fn empty_project_name() {
    let (line, col, msg, _) = only_error("[project]\nname = \"\"\n");
    assert_eq!((line, col), (2, 8));
    assert_eq!(msg, "invalid project name \"\": it is empty");
}

#[test]
fn project_name_that_systemd_would_not_take() {
    for bad in ["my app", "app.scope", "-lead", "ü"] {
        let (_, _, msg, _) = only_error(&format!("[project]\nname = \"{bad}\"\n"));
        assert!(
            msg.starts_with(&format!("invalid project name \"{bad}\"")),
            "{msg}"
        );
    }
    let (_, _, msg, _) = only_error(&format!("[project]\nname = \"{}\"\n", "a".repeat(65)));
    assert!(msg.ends_with("it is longer than 64 characters"), "{msg}");
}

#[test]
fn invalid_service_name() {
    let (line, _, msg, _) = only_error(&format!(
        "{HEAD}[services.\"web app\"]\ncommand = [\"x\"]\n"
    ));
    assert_eq!(line, 3);
    assert!(msg.starts_with("invalid service name \"web app\""), "{msg}");
}

#[test]
fn missing_project_table_and_name() {
    let (line, col, msg, _) = only_error("[services.a]\ncommand = [\"x\"]\n");
    assert_eq!((line, col, msg.as_str()), (1, 1, "missing [project] table"));
    let (_, _, msg, _) = only_error("[project]\nstate_dir = \"x\"\n");
    assert_eq!(msg, "[project] has no `name`");
}

#[test]
fn toml_syntax_error_has_a_location() {
    let (line, col, msg, _) = only_error("[project]\nname = \"x\"\n[services.a\n");
    assert_eq!((line, col), (3, 12));
    assert!(msg.contains("unclosed table"), "{msg}");
}

#[test]
fn probe_with_two_checks_or_none() {
    let (_, _, msg, _) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nready = {{ tcp = 1, log = \"x\" }}\n"
    ));
    assert_eq!(
        msg,
        "the ready probe of service `a` names 2 checks (tcp, log); it takes one"
    );
    let (_, _, msg, _) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nready = {{ interval = \"1s\" }}\n"
    ));
    assert_eq!(msg, "the ready probe of service `a` names no check");
}

#[test]
fn http_probe_needs_an_http_url() {
    let (_, _, msg, _) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nready = {{ http = \"localhost:80\" }}\n"
    ));
    assert!(
        msg.starts_with("the http probe needs an http:// URL"),
        "{msg}"
    );
}

#[test]
fn unknown_signal() {
    let (_, _, msg, hint) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nstop_signal = \"SIGSTOP\"\n"
    ));
    assert_eq!(msg, "\"SIGSTOP\" is not a stop signal ccscope accepts");
    assert!(hint.unwrap().contains("SIGTERM"));
}

#[test]
fn signals_are_read_in_every_spelling() {
    for spelling in ["\"SIGINT\"", "\"INT\"", "\"int\"", "2"] {
        let c = parse(&format!(
            "{HEAD}[services.a]\ncommand = [\"x\"]\nstop_signal = {spelling}\n"
        ))
        .unwrap();
        assert_eq!(
            c.services["a"].stop_signal.number,
            libc::SIGINT,
            "{spelling}"
        );
    }
}

#[test]
fn reserved_environment_variables() {
    let (_, _, msg, _) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nenv = {{ CCSCOPE_PROJECT = \"x\" }}\n"
    ));
    assert_eq!(
        msg,
        "service `a` sets `CCSCOPE_PROJECT`, which ccscope sets itself"
    );
}

#[test]
fn bad_limits() {
    let text = format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nlimits = {{ memory = \"lots\", tasks = 0, cpu = \"fast\" }}\n"
    );
    match parse(&text) {
        Err(ConfigError::Invalid { diagnostics }) => {
            let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
            assert_eq!(messages.len(), 3, "{messages:?}");
            assert!(
                messages[0].starts_with("invalid memory limit"),
                "{messages:?}"
            );
            assert!(
                messages[1].starts_with("invalid tasks limit 0"),
                "{messages:?}"
            );
            assert!(messages[2].starts_with("invalid cpu limit"), "{messages:?}");
        }
        other => panic!("expected three limit errors, got {other:?}"),
    }
}

#[test]
fn backoff_that_shrinks() {
    let (_, _, msg, _) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nrestart = {{ policy = \"always\", initial_backoff = \"1m\", max_backoff = \"1s\" }}\n"
    ));
    assert_eq!(
        msg,
        "restart initial_backoff 1m is longer than max_backoff 1s"
    );
}

#[test]
fn docker_service_needs_an_image_and_no_command() {
    let (_, _, msg, _) = only_error(&format!("{HEAD}[services.a.docker]\nports = [1]\n"));
    assert_eq!(msg, "the docker section of service `a` has no `image`");
    let (_, _, msg, _) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\ndocker = {{ image = \"i\" }}\n"
    ));
    assert_eq!(
        msg,
        "service `a` is a docker service and also has a command"
    );
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let text = format!(
        "{HEAD}[services.a]\nports = [1]\n[services.b]\ncommand = [\"x\"]\nstop_timeout = \"x\"\n"
    );
    // The duration is a type error in `b`; it no longer hides what is wrong with `a`.
    match parse(&text) {
        Err(ConfigError::Invalid { diagnostics }) => {
            let found: Vec<(usize, &str)> = diagnostics
                .iter()
                .map(|d| (d.location.line, d.message.as_str()))
                .collect();
            assert_eq!(found.len(), 2, "{diagnostics:#?}");
            assert_eq!(found[0], (3, "service `a` has no command"));
            assert_eq!(found[1].0, 7);
            assert!(
                found[1].1.starts_with("invalid duration \"x\""),
                "{found:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let text = format!(
        "{HEAD}[services.a]\nports = [1]\n[services.b]\ncommand = [\"x\"]\nports = [1]\ndepends_on = [\"zz\"]\n"
    );
    match parse(&text) {
        Err(ConfigError::Invalid { diagnostics }) => {
            let lines: Vec<usize> = diagnostics.iter().map(|d| d.location.line).collect();
            assert_eq!(lines, vec![3, 7, 8], "{diagnostics:#?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn defaults_apply_and_services_override_them() {
    let text = format!(
        "{HEAD}[defaults]\nstop_timeout = \"3s\"\nenv = {{ A = \"1\", B = \"1\" }}\nready = {{ interval = \"100ms\" }}\n\
         [services.a]\ncommand = [\"x\"]\nenv = {{ B = \"2\" }}\nready = {{ tcp = 9000 }}\ncwd = \"sub\"\n\
         [services.b]\ncommand = [\"y\"]\nstop_timeout = \"1s\"\n"
    );
    let c = parse(&text).unwrap();
    let a = &c.services["a"];
    assert_eq!(a.stop_timeout.0.as_secs(), 3);
    assert_eq!(c.services["b"].stop_timeout.0.as_secs(), 1);
    assert_eq!(a.env["A"], "1");
    assert_eq!(a.env["B"], "2");
    let ready = a.ready.as_ref().unwrap();
    assert_eq!(ready.interval.0.as_millis(), 100);
    assert!(matches!(&ready.check, ProbeCheck::Tcp { host, port: 9000 } if host == "127.0.0.1"));
    assert_eq!(
        a.cwd.as_deref(),
        Some(Path::new("/stack/sub")),
        "relative to the config's directory"
    );
}

#[test]
fn lookup_walks_up_to_parent_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let deep = tmp.path().join("a/b/c");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(tmp.path().join("a").join(FILE_NAME), HEAD).unwrap();
    let config = load(&ConfigRequest::default(), &deep).unwrap();
    assert_eq!(config.project.name, "demo");
    let nowhere = tempfile::tempdir().unwrap();
    assert!(matches!(
        load(&ConfigRequest::default(), nowhere.path()),
        Err(ConfigError::NotFound { .. })
    ));
}

#[test]
fn unknown_profile_suggests_one() {
    let err = load(
        &ConfigRequest {
            profile: Some("exampel".into()),
            file: None,
        },
        Path::new("/"),
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::UnknownProfile { .. }));
    assert!(err.hint().unwrap().starts_with("did you mean `example`?"));
}

#[test]
fn the_demo_profile_is_valid_and_takes_its_project_and_ports() {
    let text = profiles::demo("demo-x", 30000);
    let config = parse(&text).unwrap();
    assert_eq!(config.project.name, "demo-x");
    let ports: Vec<u16> = config
        .services
        .values()
        .flat_map(|s| s.ports.clone())
        .collect();
    assert_eq!(
        ports,
        vec![30023, 30010, 30017],
        "clickhouse, dashboard, telemetry (by name)"
    );
    assert_eq!(
        graph::start_layers(&config),
        vec![
            vec!["clickhouse".to_string()],
            vec!["telemetry_collector".to_string()],
            vec!["bridge_sync".to_string(), "dashboard".to_string()],
        ]
    );
}

#[test]
fn a_file_that_is_not_utf8_is_named_with_the_place_of_its_first_bad_byte() {
    let tmp = tempfile::tempdir().unwrap();
    // "café" in Latin-1: é is the single byte 0xe9.
    let mut text = b"[project]\nname = \"caf".to_vec();
    text.extend_from_slice(b"\xe9\"\n");
    std::fs::write(tmp.path().join(FILE_NAME), &text).unwrap();
    let err = load(&ConfigRequest::default(), tmp.path()).unwrap_err();
    let ConfigError::Invalid { diagnostics } = &err else {
        panic!("expected a diagnostic, got {err:?}");
    };
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    let d = &diagnostics[0];
    assert_eq!(d.location.to_string(), "ccscope.toml:2:12");
    assert_eq!(
        d.message,
        "the file is not valid UTF-8: byte 0xe9 at offset 21 does not belong to a UTF-8 character"
    );
    assert!(
        d.hint
            .as_deref()
            .unwrap()
            .starts_with("save the file as UTF-8")
    );
    assert_eq!(err.hint(), None, "no hint about paths or permissions");
}

/// Every diagnostic of `text`, as `line:column: message`.
fn all_errors(text: &str) -> Vec<String> {
    match parse(text) {
        Err(ConfigError::Invalid { diagnostics }) => diagnostics
            .iter()
            .map(|d| format!("{}:{}: {}", d.location.line, d.location.column, d.message))
            .collect(),
        Err(other) => panic!("expected an invalid-config error, got {other}"),
        Ok(_) => panic!("expected errors, the config validated:\n{text}"),
    }
}

#[test]
fn mistakes_in_different_places_are_all_reported_each_where_it_is() {
    // An unknown key in `a`, a wrong type in `b`, an unknown top-level table, and a semantic
    // error in `c`: serde alone would stop at the first.
    let text = format!(
        "{HEAD}[services.a]\ncomand = [\"x\"]\n\
         [services.b]\ncommand = \"y\"\n\
         [servicez.d]\ncommand = [\"z\"]\n\
         [services.c]\ncommand = [\"z\"]\nports = [70000]\n"
    );
    let errors = all_errors(&text);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_eq!(errors[0], "4:1: unknown key `comand` in [services.a]");
    assert!(
        errors[1].starts_with("6:11: invalid type: string \"y\", expected a sequence"),
        "{errors:#?}"
    );
    assert!(
        errors[2].starts_with("7:2: unknown key `servicez`"),
        "{errors:#?}"
    );
    assert_eq!(errors[3], "11:10: port 70000 is out of range");
}

#[test]
fn every_key_that_does_not_fit_one_service_is_reported() {
    let text = format!(
        "{HEAD}[services.a]\ncomand = [\"x\"]\nstop_timeout = 10\nrestart = \"sometimes\"\n"
    );
    let errors = all_errors(&text);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_eq!(errors[0], "4:1: unknown key `comand` in [services.a]");
    assert!(errors[1].starts_with("5:16: "), "{errors:#?}");
    assert!(errors[1].contains("write \"10s\""), "{errors:#?}");
    assert!(errors[2].starts_with("6:11: "), "{errors:#?}");
    assert!(errors[2].contains("sometimes"), "{errors:#?}");
}

#[test]
fn a_service_that_does_not_fit_still_exists_for_its_dependents() {
    // `db` has a wrong type; `api` depending on it is not "a dependency on no service", and
    // `db` itself is not also "missing a command".
    let text = format!(
        "{HEAD}[services.db]\ncommand = [\"pg\"]\nports = \"5432\"\n\
         [services.api]\ncommand = [\"api\"]\ndepends_on = [\"db\"]\n"
    );
    let errors = all_errors(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with("5:9: invalid type"), "{errors:#?}");
}

#[test]
fn a_project_table_that_does_not_fit_is_not_also_missing() {
    let errors = all_errors("[project]\nname = 5\nstate = \"x\"\n[services.a]\ncommand = []\n");
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].starts_with("2:8: invalid type: integer"),
        "{errors:#?}"
    );
    assert!(
        errors[1].starts_with("3:1: unknown key `state` in [project]"),
        "{errors:#?}"
    );
    assert_eq!(errors[2], "5:11: the command of service `a` is empty");
}

fn docker_of(text: &str) -> DockerSpec {
    let config = parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    match &config.services["a"].launch {
        Launch::Docker(d) => d.clone(),
        other => panic!("not a docker service: {other:?}"),
    }
}

#[test]
fn docker_options_have_their_defaults() {
    let d = docker_of(&format!("{HEAD}[services.a.docker]\nimage = \"i\"\n"));
    assert!(d.init, "init is on unless turned off");
    assert_eq!(d.pull, PullPolicy::Missing);
    assert_eq!(d.name, None);
    assert_eq!((d.network, d.workdir, d.user), (None, None, None));
    assert_eq!(d.entrypoint, None);
}

#[test]
fn docker_options_are_read() {
    let d = docker_of(&format!(
        "{HEAD}[services.a.docker]\nimage = \"i\"\ncommand = [\"serve\", \"--x\"]\n\
         entrypoint = [\"/init\"]\nname = \"clickhouse-otel\"\nnetwork = \"stack_net\"\n\
         workdir = \"/srv\"\nuser = \"1000:1000\"\ninit = false\npull = \"never\"\n\
         volumes = [\"./data:/var/lib/x\", \"/etc/x:/etc/x:ro\", \"named:/cache\"]\n"
    ));
    assert_eq!(d.command.unwrap(), ["serve", "--x"]);
    assert_eq!(d.entrypoint.unwrap(), ["/init"]);
    assert_eq!(d.name.as_deref(), Some("clickhouse-otel"));
    assert_eq!(d.network.as_deref(), Some("stack_net"));
    assert_eq!(d.workdir.as_deref(), Some("/srv"));
    assert_eq!(d.user.as_deref(), Some("1000:1000"));
    assert!(!d.init);
    assert_eq!(d.pull, PullPolicy::Never);
    assert_eq!(
        d.volumes,
        ["/stack/data:/var/lib/x", "/etc/x:/etc/x:ro", "named:/cache"],
        "a relative bind is the config's directory's; a named volume is kept"
    );
}

#[test]
fn bad_docker_options_point_at_themselves() {
    let cases = [
        ("pull = \"sometimes\"", "unknown pull policy \"sometimes\""),
        (
            "name = \"bad name\"",
            "invalid container name \"bad name\": ` ` is not allowed in it",
        ),
        (
            "workdir = \"srv\"",
            "invalid docker `workdir` \"srv\" of service `a`: it is not an absolute path",
        ),
        (
            "user = \"a b\"",
            "invalid docker `user` \"a b\" of service `a`: it holds a space or a control character",
        ),
        (
            "network = \"\"",
            "invalid docker `network` \"\" of service `a`: it is empty",
        ),
        (
            "entrypoint = []",
            "the docker `entrypoint` of service `a` is empty",
        ),
        (
            "volumes = [\"/x\"]",
            "invalid docker volume \"/x\": it is not `host:container` or `host:container:mode`",
        ),
        (
            "volumes = [\"/x:rel\"]",
            "invalid docker volume \"/x:rel\": the container side \"rel\" is not an absolute path",
        ),
        (
            "volumes = [\"/x:/y:rx\"]",
            "invalid docker volume \"/x:/y:rx\": unknown mode \"rx\" (it takes \"ro\" or \"rw\")",
        ),
    ];
    for (line, expected) in cases {
        let text = format!("{HEAD}[services.a.docker]\nimage = \"i\"\n{line}\n");
        let (l, col, msg, _) = only_error(&text);
        assert_eq!(msg, expected, "{line}");
        assert_eq!(l, 5, "{line}: points at its own line");
        assert!(col > 1, "{line}: points at the value, column {col}");
    }
}

#[test]
fn ccscope_labels_stay_refused() {
    let (_, _, msg, _) = only_error(&format!(
        "{HEAD}[services.a.docker]\nimage = \"i\"\nlabels = {{ \"ccscope.project\" = \"x\" }}\n"
    ));
    assert_eq!(
        msg,
        "label `ccscope.project` is reserved: ccscope sets the `ccscope.*` labels itself"
    );
}

#[test]
fn the_docker_healthy_probe_is_for_containers_only() {
    let config = parse(&format!(
        "{HEAD}[services.a]\nready = {{ docker = \"healthy\" }}\n[services.a.docker]\nimage = \"i\"\n"
    ))
    .unwrap();
    assert!(matches!(
        config.services["a"].ready.as_ref().unwrap().check,
        ProbeCheck::DockerHealthy
    ));
    let (l, _, msg, hint) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nready = {{ docker = \"healthy\" }}\n"
    ));
    assert_eq!(
        msg,
        "the ready probe of service `a` waits for a docker HEALTHCHECK, but the service is not a container"
    );
    assert_eq!(l, 5);
    assert!(hint.unwrap().contains("[docker]"));
    let (_, _, msg, _) = only_error(&format!(
        "{HEAD}[services.a]\nready = {{ docker = \"up\" }}\n[services.a.docker]\nimage = \"i\"\n"
    ));
    assert_eq!(msg, "unknown docker probe \"up\"");
}

#[test]
fn compose_projects_are_listed_and_checked() {
    let config = parse(
        "[project]\nname = \"demo\"\ndocker_compose_projects = [\"otel\", \"ch_2\"]\n\
         [services.a]\ncommand = [\"x\"]\n",
    )
    .unwrap();
    assert_eq!(config.project.docker_compose_projects, ["otel", "ch_2"]);
    let (l, _, msg, _) = only_error(
        "[project]\nname = \"demo\"\ndocker_compose_projects = [\"Otel\"]\n[services.a]\ncommand = [\"x\"]\n",
    );
    assert_eq!(
        msg,
        "invalid compose project name \"Otel\": it does not start with a lowercase letter or digit"
    );
    assert_eq!(l, 3);
    let (_, _, msg, _) = only_error(
        "[project]\nname = \"demo\"\ndocker_compose_projects = [\"a\", \"a\"]\n[services.a]\ncommand = [\"x\"]\n",
    );
    assert_eq!(msg, "compose project \"a\" is listed twice");
}

#[test]
fn the_long_dependency_form_gives_conditions_and_restart_with() {
    let config = parse(&format!(
        "{HEAD}[services.db]\ncommand = [\"db\"]\n[services.cache]\ncommand = [\"c\"]\n\
         [services.q]\ncommand = [\"q\"]\n\
         [services.api]\ncommand = [\"api\"]\n\
         depends_on = {{ db = {{ condition = \"started\", restart = true }}, cache = \"healthy\", \
         q = {{ restart = false }} }}\n"
    ))
    .unwrap();
    let api = &config.services["api"];
    assert_eq!(api.depends_on["db"], DependencyCondition::Started);
    assert_eq!(api.depends_on["cache"], DependencyCondition::Healthy);
    assert_eq!(
        api.depends_on["q"],
        DependencyCondition::Healthy,
        "the long form without a condition means what the array form means"
    );
    assert_eq!(
        api.restart_with.iter().collect::<Vec<_>>(),
        ["db"],
        "only the dependency with restart = true"
    );
    assert!(config.services["db"].restart_with.is_empty());
    let json = serde_json::to_value(api).unwrap();
    assert_eq!(json["restart_with"], serde_json::json!(["db"]));
    assert_eq!(json["depends_on"]["db"], "started");
}

#[test]
fn an_unknown_key_in_a_long_dependency_suggests_the_closest() {
    let (line, col, msg, hint) = only_error(&format!(
        "{HEAD}[services.db]\ncommand = [\"db\"]\n[services.api]\ncommand = [\"api\"]\n\
         depends_on = {{ db = {{ condtion = \"started\" }} }}\n"
    ));
    assert_eq!((line, col), (7, 23), "{msg}");
    assert_eq!(msg, "unknown key `condtion` in [services.api]");
    assert_eq!(hint.as_deref(), Some("did you mean `condition`?"));
}

#[test]
fn a_wrong_condition_or_restart_in_a_long_dependency_is_located() {
    let (line, col, msg, hint) = only_error(&format!(
        "{HEAD}[services.db]\ncommand = [\"db\"]\n[services.api]\ncommand = [\"api\"]\n\
         depends_on = {{ db = {{ condition = \"helthy\" }} }}\n"
    ));
    assert_eq!((line, col), (7, 35), "{msg}");
    assert_eq!(msg, "unknown value `helthy` in [services.api]");
    assert_eq!(hint.as_deref(), Some("did you mean `healthy`?"));
    let (line, col, msg, _) = only_error(&format!(
        "{HEAD}[services.db]\ncommand = [\"db\"]\n[services.api]\ncommand = [\"api\"]\n\
         depends_on = {{ db = {{ restart = \"yes\" }} }}\n"
    ));
    assert_eq!((line, col), (7, 33), "{msg}");
    assert!(msg.contains("expected a boolean"), "{msg}");
}

#[test]
fn a_restart_with_on_an_unknown_service_is_the_unknown_dependency_error() {
    let (line, col, msg, hint) = only_error(&format!(
        "{HEAD}[services.db]\ncommand = [\"db\"]\n[services.api]\ncommand = [\"api\"]\n\
         depends_on = {{ bd = {{ restart = true }} }}\n"
    ));
    assert_eq!((line, col), (7, 16));
    assert_eq!(msg, "service `api` depends on `bd`, which is not a service");
    assert_eq!(hint.as_deref(), Some("did you mean `db`?"));
}

#[test]
fn a_watch_table_is_read_with_its_defaults() {
    let config = parse(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\n\
         watch = {{ paths = [\"src/**/*.py\", \"/etc/app.conf\"], ignore = [\"**/__pycache__/**\"] }}\n\
         [services.b]\ncommand = [\"x\"]\nwatch = {{ paths = [\"b/*\"], debounce = \"2s\" }}\n\
         [services.c]\ncommand = [\"x\"]\n"
    ))
    .unwrap();
    let a = config.services["a"].watch.as_ref().unwrap();
    assert_eq!(
        a,
        &WatchSpec {
            base: "/stack".into(),
            paths: vec!["src/**/*.py".into(), "/etc/app.conf".into()],
            ignore: vec!["**/__pycache__/**".into()],
            debounce: duration::HumanDuration::from_millis(500),
        }
    );
    let b = config.services["b"].watch.as_ref().unwrap();
    assert_eq!(b.debounce, duration::HumanDuration::from_secs(2));
    assert!(b.ignore.is_empty());
    assert!(config.services["c"].watch.is_none());
    let json = serde_json::to_value(&config.services["b"]).unwrap();
    assert_eq!(
        json["watch"],
        serde_json::json!({ "base": "/stack", "paths": ["b/*"], "ignore": [], "debounce": "2s" })
    );
}

#[test]
fn a_watch_without_paths_is_refused_where_it_is() {
    let (line, col, msg, hint) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nwatch = {{ paths = [] }}\n"
    ));
    assert_eq!((line, col), (5, 19));
    assert_eq!(msg, "the watch of service `a` has no paths");
    assert!(hint.unwrap().contains("src/**/*.py"));
    let (line, col, msg, _) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nwatch = {{ ignore = [\"x\"] }}\n"
    ));
    assert_eq!((line, col), (5, 9));
    assert_eq!(msg, "the watch of service `a` has no `paths`");
}

#[test]
fn an_invalid_watch_glob_says_what_is_wrong_with_it() {
    let errors = all_errors(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\n\
         watch = {{ paths = [\"src/[a.py\", \"ok/**\"], ignore = [\"a{{b\", \"\"] }}\n"
    ));
    assert_eq!(
        errors,
        [
            "5:20: invalid watch glob \"src/[a.py\" of service `a`: unclosed character class; \
             missing ']'",
            "5:53: invalid watch glob \"a{b\" of service `a`: unclosed alternate group; missing \
             '}' (maybe escape '{' with '[{]'?)",
            "5:60: invalid watch glob \"\" of service `a`: it is empty",
        ]
    );
}

#[test]
fn a_watch_debounce_must_be_positive_and_at_most_a_minute() {
    for (value, col) in [("0", 37), ("61s", 37), ("1h", 37)] {
        let (line, c, msg, _) = only_error(&format!(
            "{HEAD}[services.a]\ncommand = [\"x\"]\n\
             watch = {{ paths = [\"a\"], debounce = \"{value}\" }}\n"
        ));
        assert_eq!((line, c), (5, col), "{value}: {msg}");
        assert!(
            msg.starts_with("the watch debounce of service `a` is ")
                && msg.ends_with("it must be longer than 0 and at most 1m"),
            "{msg}"
        );
    }
    let config = parse(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nwatch = {{ paths = [\"a\"], debounce = \"1m\" }}\n"
    ))
    .unwrap();
    assert_eq!(
        config.services["a"].watch.as_ref().unwrap().debounce,
        duration::HumanDuration::from_secs(60)
    );
}

#[test]
fn an_unknown_watch_key_suggests_the_closest() {
    let (line, col, msg, hint) = only_error(&format!(
        "{HEAD}[services.a]\ncommand = [\"x\"]\nwatch = {{ paths = [\"a\"], ignor = [] }}\n"
    ));
    assert_eq!((line, col), (5, 26));
    assert_eq!(msg, "unknown key `ignor` in [services.a]");
    assert_eq!(hint.as_deref(), Some("did you mean `ignore`?"));
}

#[test]
fn a_watch_on_a_docker_service_is_allowed() {
    let config = parse(&format!(
        "{HEAD}[services.a]\nwatch = {{ paths = [\"conf/*.xml\"] }}\n\
         [services.a.docker]\nimage = \"busybox\"\n"
    ))
    .unwrap();
    assert!(config.services["a"].watch.is_some());
}

#[test]
fn alerts_have_their_defaults_and_are_read() {
    let config = parse(&format!("{HEAD}[services.a]\ncommand = [\"x\"]\n")).unwrap();
    assert_eq!(config.project.alerts, Alerts::default());
    assert!(config.project.alerts.desktop);
    assert_eq!(config.project.alerts.exec, None);
    assert_eq!(
        config.project.alerts.rate_limit.0,
        std::time::Duration::from_secs(60)
    );
    let config = parse(&format!(
        "{HEAD}[project.alerts]\ndesktop = false\nexec = [\"notify-me\", \"--urgent\"]\n\
         rate_limit = \"5m\"\n[services.a]\ncommand = [\"x\"]\n"
    ))
    .unwrap();
    assert_eq!(
        config.project.alerts,
        Alerts {
            desktop: false,
            exec: Some(vec!["notify-me".into(), "--urgent".into()]),
            rate_limit: duration::HumanDuration::from_secs(300),
        }
    );
    let json = serde_json::to_value(&config.project).unwrap();
    assert_eq!(
        json["alerts"],
        serde_json::json!({"desktop": false, "exec": ["notify-me", "--urgent"], "rate_limit": "5m"})
    );
}

#[test]
fn an_unknown_alerts_key_suggests_the_closest() {
    let (line, col, msg, hint) = only_error(&format!(
        "{HEAD}[project.alerts]\ndeskop = false\n[services.a]\ncommand = [\"x\"]\n"
    ));
    assert_eq!((line, col), (4, 1));
    assert_eq!(msg, "unknown key `deskop` in [project.alerts]");
    assert_eq!(hint.as_deref(), Some("did you mean `desktop`?"));
}

#[test]
fn bad_alert_values_point_at_themselves() {
    let (line, col, msg, _) = only_error(&format!(
        "{HEAD}[project.alerts]\nexec = []\n[services.a]\ncommand = [\"x\"]\n"
    ));
    assert_eq!((line, col), (4, 8));
    assert_eq!(msg, "the alert `exec` of [project.alerts] has no command");
    let (line, col, msg, hint) = only_error(&format!(
        "{HEAD}[project.alerts]\nrate_limit = \"500ms\"\n[services.a]\ncommand = [\"x\"]\n"
    ));
    assert_eq!((line, col), (4, 14));
    assert_eq!(
        msg,
        "the alert rate_limit of [project.alerts] is 500ms: it must be at least 1s"
    );
    assert!(hint.unwrap().contains("60s"));
    let (line, _, msg, _) = only_error(&format!(
        "{HEAD}[project.alerts]\nrate_limit = \"2d\"\n[services.a]\ncommand = [\"x\"]\n"
    ));
    assert_eq!(line, 4);
    assert!(msg.contains("invalid duration"), "{msg}");
    let (line, _, msg, _) = only_error(&format!(
        "{HEAD}[project.alerts]\ndesktop = \"yes\"\n[services.a]\ncommand = [\"x\"]\n"
    ));
    assert_eq!(line, 4);
    assert!(msg.contains("bool"), "{msg}");
    let (line, _, msg, _) = only_error(&format!(
        "{HEAD}[project.alerts]\nexec = [\"a\\u0000b\"]\n[services.a]\ncommand = [\"x\"]\n"
    ));
    assert_eq!(line, 4);
    assert!(msg.contains("NUL"), "{msg}");
}
