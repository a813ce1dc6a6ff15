//! The interop endpoints as the quic-interop-runner drives them (`interop/run_endpoint.sh`):
//! `segue hq serve` and the interop client `segue-lab hq get`, as processes.

use segue_net::NodeTls;

/// `interop/run_endpoint.sh` as the interop runner drives it: real processes.
#[test]
fn run_endpoint_sh_serves_downloads_and_refuses_what_it_lacks() {
    use std::process::{Command, Stdio};
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/run_endpoint.sh");
    // `segue-lab hq serve` is `segue hq serve`; `segue-lab hq get` is the client.
    let segue = env!("CARGO_BIN_EXE_segue-lab");
    let dir = tempfile::tempdir().unwrap();
    let tls = NodeTls::dev(&dir.path().join("dev")).unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&tls.cert, certs.join("cert.pem")).unwrap();
    std::fs::copy(&tls.key, certs.join("priv.key")).unwrap();
    std::fs::copy(&tls.ca, certs.join("ca.pem")).unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let body: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(www.join("a.bin"), &body).unwrap();
    std::fs::write(www.join("b.txt"), b"hello\n").unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = |c: &mut Command, role: &str, case: &str| {
        c.env("ROLE", role)
            .env("TESTCASE", case)
            .env("WWW", &www)
            .env("DOWNLOADS", dir.path().join("downloads"))
            .env("CERTS", &certs)
            .env("PORT", port.to_string())
            .env("SEGUE", segue)
            .env("SEGUE_LAB", segue)
            .env("QLOGDIR", dir.path().join("qlog"))
            .env(
                "REQUESTS",
                format!("https://localhost:{port}/a.bin https://localhost:{port}/b.txt"),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    };
    for role in ["server", "client"] {
        let mut c = Command::new(&script);
        env(&mut c, role, "connectionmigration");
        assert_eq!(
            c.status().unwrap().code(),
            Some(127),
            "{role}: unsupported case"
        );
    }
    let mut server = Command::new(&script);
    env(&mut server, "server", "retry");
    let mut server = server.spawn().unwrap();
    let got = dir.path().join("downloads");
    for case in ["transfer", "http3", "resumption"] {
        let _ = std::fs::remove_dir_all(&got);
        let mut ok = false;
        for _ in 0..50 {
            let mut client = Command::new(&script);
            env(&mut client, "client", case);
            if client.status().unwrap().success() {
                ok = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(ok, "{case}: the client never downloaded");
        assert_eq!(std::fs::read(got.join("a.bin")).unwrap(), body, "{case}");
        assert_eq!(std::fs::read(got.join("b.txt")).unwrap(), b"hello\n");
    }
    let _ = server.kill();
    let _ = server.wait();
    // QLOGDIR: a JSON-SEQ qlog trace per connection, client and server side.
    let traces: Vec<_> = std::fs::read_dir(dir.path().join("qlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for role in ["client", "server"] {
        let mine: Vec<_> = traces
            .iter()
            .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(role))
            .collect();
        // transfer, http3, and resumption's two connections (Retry answers are no connection)
        assert!(mine.len() >= 4, "{role}: {} traces", mine.len());
        let text = std::fs::read_to_string(mine[0]).unwrap();
        let first = text.split('\u{1e}').find(|r| !r.trim().is_empty()).unwrap();
        let header: serde_json::Value = serde_json::from_str(first.trim()).unwrap();
        assert!(header["qlog_version"].is_string(), "{first}");
        assert!(text.contains("packet_sent") && text.contains("packet_received"));
    }
}
