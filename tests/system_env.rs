//! System tier: proves the test environment is real. These talk to the systemd user manager
//! over the session bus and to journald, as ccscope does; scripts/test.sh brings them up.

mod common;

use common::require_test_env;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

#[tokio::test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
async fn the_user_manager_answers_on_the_session_bus() {
    require_test_env();
    let bus = zbus::Connection::session()
        .await
        .expect("connect to the session bus");
    let version: OwnedValue = bus
        .call_method(
            Some(SYSTEMD),
            MANAGER_PATH,
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &(MANAGER, "Version"),
        )
        .await
        .expect("read Manager.Version")
        .body()
        .deserialize()
        .unwrap();
    let version: String = version.try_into().expect("Version is a string");
    assert!(!version.is_empty());

    // The manager's own scope exists, and it lives in the manager's cgroup.
    let unit: OwnedObjectPath = bus
        .call_method(
            Some(SYSTEMD),
            MANAGER_PATH,
            Some(MANAGER),
            "GetUnit",
            &("init.scope",),
        )
        .await
        .expect("GetUnit init.scope")
        .body()
        .deserialize()
        .unwrap();
    let cgroup: OwnedValue = bus
        .call_method(
            Some(SYSTEMD),
            unit.as_str(),
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &("org.freedesktop.systemd1.Scope", "ControlGroup"),
        )
        .await
        .expect("read the scope's ControlGroup")
        .body()
        .deserialize()
        .unwrap();
    let cgroup: String = cgroup.try_into().unwrap();
    assert!(
        cgroup.ends_with("/init.scope"),
        "a user manager's init.scope, got {cgroup}"
    );
    assert!(
        cgroup.contains("user@"),
        "the manager is a user manager (user@UID.service), got {cgroup}"
    );
}

#[test]
#[ignore = "system test: needs journald (run scripts/test.sh)"]
fn an_audit_entry_written_to_journald_reads_back() {
    require_test_env();
    let marker = format!("{}-{}", std::process::id(), ccscope::registry::new_run_id());
    ccscope::audit::journal::send(
        ccscope::audit::Priority::Notice,
        "ccscope test entry\nwith a second line",
        &[
            ("CCSCOPE_EVENT", "test"),
            ("CCSCOPE_TEST_ID", &marker),
            ("CCSCOPE_PROJECT", "system-test"),
        ],
    )
    .expect("write to journald");
    let entry = common::wait_for_journal_entry(
        "the entry to appear in the journal",
        &[format!("CCSCOPE_TEST_ID={marker}")],
    );
    assert_eq!(entry["MESSAGE"], "ccscope test entry\nwith a second line");
    assert_eq!(entry["CCSCOPE_EVENT"], "test");
    assert_eq!(entry["CCSCOPE_PROJECT"], "system-test");
    assert_eq!(entry["SYSLOG_IDENTIFIER"], "ccscope");
    assert_eq!(entry["PRIORITY"], "5");
    assert_eq!(
        entry["_PID"],
        std::process::id().to_string(),
        "journald attributes the entry to its writer"
    );
}
