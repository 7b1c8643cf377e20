//! A reload that changes a link's connection settings applies them at that link's next
//! reconnect, without a restart: the Connector moves from one csta-sim to another.

use std::time::{Duration, Instant};

use ctid_server::{Config, StartOptions};
use ctid_sim::{Sim, SimConfig};

mod common;
use common::any;

fn conns(s: &serde_json::Value) -> usize {
    s.get("connections")
        .and_then(|v| v.as_array())
        .map(|a| a.len())
        .expect("the simulator lists its connections")
}

fn config(port: u16) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n[[link]]\nname = \"connector\"\nhost = \"127.0.0.1\"\nport = {port}\nreconnect-min = 0.1\nreconnect-max = 0.3\nconnect-tout = 0.8\n[[dn]]\nrange = \"1001-1003\"\nregister = true\n"
    )
}

#[tokio::test]
async fn changed_link_settings_apply_at_the_next_reconnect() {
    let a = Sim::start(SimConfig::demo(), any(), None).await.unwrap();
    let b = Sim::start(SimConfig::demo(), any(), None).await.unwrap();
    let dir = std::env::temp_dir().join(format!("ctid-reload-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ctid.toml");
    std::fs::write(&file, config(a.csta_addr().port())).unwrap();
    let ctid = ctid_server::start_with(
        Config::load(&file).unwrap(),
        StartOptions {
            config_path: Some(file.clone()),
            admin_token: None,
        },
    )
    .await
    .unwrap();
    let up = |ctid: &ctid_server::Running| ctid.status.borrow().link.as_str() == "up";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !up(&ctid) {
        assert!(Instant::now() < deadline, "link never up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(conns(&a.snapshot().await), 1);
    // Point the link at B and reload: nothing changes until the link reconnects.
    std::fs::write(&file, config(b.csta_addr().port())).unwrap();
    let summary = ctid.reload().await.unwrap();
    assert!(summary.contains("next reconnect"), "{summary}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(conns(&a.snapshot().await), 1, "still on A");
    assert_eq!(conns(&b.snapshot().await), 0);
    // A drops the connection: ctid reconnects, to B.
    a.drop_connections().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if up(&ctid) && conns(&b.snapshot().await) == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "ctid did not move to B");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(conns(&a.snapshot().await), 0, "A is left alone");
    let _ = std::fs::remove_dir_all(&dir);
}
