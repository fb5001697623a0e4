//! System tier: the Docker side of the test environment is what the container tests assume —
//! a daemon answers, the offline test image serves HTTP on a published port and runs as
//! `nobody`, and a test's container is found by its labels and gone once its guard drops.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{TestContainer, containers_labelled, require_docker};

#[test]
#[ignore = "system test: needs the dockerd and test image of scripts/test-env.sh (run scripts/test.sh)"]
fn the_test_image_serves_http_and_a_test_container_is_removed_by_its_guard() {
    require_docker();
    let mark = format!("ccscope.test-env-check={}", std::process::id());
    let (key, value) = mark.split_once('=').unwrap();
    let container = TestContainer::run(
        &[(key, value)],
        &["--init", "--user", "nobody", "--publish", "127.0.0.1::8080"],
        &[
            "sh",
            "-c",
            "mkdir -p /tmp/www && id -un > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
        ],
    );
    container.wait_running(Duration::from_secs(10));
    assert_eq!(containers_labelled(&mark), vec![container.id.clone()]);
    assert!(
        containers_labelled("ccscope.test=1").contains(&container.id),
        "every test container carries ccscope.test=1"
    );

    let inspect = container.inspect().expect("the container exists");
    let port: u16 = inspect["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no published port for 8080/tcp in {inspect}"));
    // httpd is up once it answers; it may not have bound yet when the container starts.
    let mut body = String::new();
    common::wait_for("busybox httpd to answer", Duration::from_secs(10), || {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        body.clear();
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .is_ok()
            && stream.read_to_string(&mut body).is_ok()
            && body.starts_with("HTTP/1.")
    });
    assert!(body.contains(" 200 "), "httpd answered: {body}");
    assert!(body.trim_end().ends_with("nobody"), "httpd served: {body}");
    assert!(
        container.pid().is_some(),
        "a running container has a host pid"
    );

    let id = container.id.clone();
    drop(container);
    assert!(
        containers_labelled(&mark).is_empty(),
        "container {id} outlived its guard"
    );
}
