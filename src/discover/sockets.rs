//! Listening sockets from the kernel's tables (`/proc/net/tcp`, `tcp6`), joined to the
//! processes that hold them through the socket inodes in `/proc/PID/fd`.

use std::collections::HashMap;
use std::io;
use std::path::Path;

/// One listening TCP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    /// The local address as the table shows it, e.g. `127.0.0.1` or `::`.
    pub address: String,
    pub inode: u64,
}

/// `st` 0A in the tables: TCP_LISTEN.
const TCP_LISTEN: &str = "0A";

/// Parses one `/proc/net/tcp` or `tcp6` table; keeps listening sockets.
pub fn parse_tcp_table(text: &str) -> Vec<Listener> {
    parse_table(text, TCP_LISTEN)
}

/// Parses one `/proc/net/{tcp,udp}{,6}` table; keeps the sockets in `state` (hex, as the
/// table prints it: `0A` TCP LISTEN, `07` an unconnected UDP socket).
pub fn parse_table(text: &str, state: &str) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) != Some(&state) {
                return None;
            }
            let (addr, port) = fields.get(1)?.split_once(':')?;
            Some(Listener {
                port: u16::from_str_radix(port, 16).ok()?,
                address: decode_address(addr)?,
                inode: fields.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// The kernel prints addresses as host-order 32-bit words in hex.
fn decode_address(hex: &str) -> Option<String> {
    let words: Option<Vec<u32>> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok())
        .collect();
    let bytes: Vec<u8> = words?.into_iter().flat_map(|w| w.to_ne_bytes()).collect();
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()),
        16 => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            Some(std::net::Ipv6Addr::from(octets).to_string())
        }
        _ => None,
    }
}

/// Every listening TCP socket of this network namespace.
pub fn tcp_listeners(proc_root: &Path) -> Vec<Listener> {
    ["net/tcp", "net/tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(proc_root.join(t)).ok())
        .flat_map(|text| parse_tcp_table(&text))
        .collect()
}

/// The pids holding each socket inode among `wanted`. Processes that vanish or cannot be
/// read are skipped.
pub fn holders(proc_root: &Path, wanted: &[u64]) -> HashMap<u64, Vec<i32>> {
    let mut found: HashMap<u64, Vec<i32>> = HashMap::new();
    if wanted.is_empty() {
        return found;
    }
    for (pid, dir) in super::pid_dirs(proc_root) {
        for inode in socket_inodes(&dir.join("fd")).unwrap_or_default() {
            if wanted.contains(&inode) {
                let pids = found.entry(inode).or_default();
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
    }
    found
}

/// The same, looking only at the processes `pids` (cheaper when the set is known).
pub fn holders_among(
    proc_root: &Path,
    wanted: &[u64],
    pids: impl Iterator<Item = i32>,
) -> HashMap<u64, Vec<i32>> {
    let mut found: HashMap<u64, Vec<i32>> = HashMap::new();
    for pid in pids {
        let fd_dir = proc_root.join(pid.to_string()).join("fd");
        for inode in socket_inodes(&fd_dir).unwrap_or_default() {
            if wanted.contains(&inode) {
                found.entry(inode).or_default().push(pid);
            }
        }
    }
    found
}

/// The socket inodes among a process's open descriptors.
fn socket_inodes(fd_dir: &Path) -> io::Result<Vec<u64>> {
    let mut inodes = Vec::new();
    for fd in std::fs::read_dir(fd_dir)?.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let text = target.to_string_lossy();
            if let Some(inode) = text
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
            {
                inodes.push(inode);
            }
        }
    }
    Ok(inodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_sockets_of_both_families() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:A2C4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 20 4 30 10 -1\n";
        let got = parse_tcp_table(v4);
        assert_eq!(
            got,
            vec![Listener {
                port: 8080,
                address: "127.0.0.1".into(),
                inode: 12345
            }],
            "the established connection is not a listener"
        );
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000000000000:22B8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 777 1 0000000000000000 100 0 0 10 0\n";
        let got = parse_tcp_table(v6);
        assert_eq!(got[0].port, 8888);
        assert_eq!(got[0].address, "::");
        assert_eq!(got[0].inode, 777);
    }

    #[test]
    fn finds_the_holder_of_a_real_listening_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let found = tcp_listeners(Path::new("/proc"))
            .into_iter()
            .find(|l| l.port == port)
            .expect("listed");
        assert_eq!(found.address, "127.0.0.1");
        let pids = holders(Path::new("/proc"), &[found.inode])
            .remove(&found.inode)
            .unwrap_or_default();
        assert!(pids.contains(&(std::process::id() as i32)), "{pids:?}");
    }
}
