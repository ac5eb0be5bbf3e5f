//! `hangar-router-bench LISTEN BACKEND [tcp]`: the router with one route, nothing else,
//! so `benches/router-vs-nginx.sh` measures proxying alone (nginx runs 2 workers;
//! the router serves on 2 threads, as `hangar deploy` runs it). With `tcp`, the
//! raw TCP mode of `protocol: tcp` services, for `benches/tcp-proxy-vs-haproxy.sh`.

use hangar_router::{Router, Table};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(backend)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: hangar-router-bench LISTEN_ADDR BACKEND_ADDR");
        std::process::exit(2);
    };
    let listen = listen
        .parse()
        .map_err(|e| std::io::Error::other(format!("{listen}: {e}")))?;
    let backend = backend
        .parse()
        .map_err(|e| std::io::Error::other(format!("{backend}: {e}")))?;
    let router = Router::new("bench");
    router.set_table(Table::one_version(&router, "v1", &[backend]));
    let _handle = match args.get(3).map(String::as_str) {
        Some("tcp") => router.serve_tcp(listen)?,
        _ => router.serve_threads(listen, 2)?,
    };
    loop {
        std::thread::park();
    }
}
