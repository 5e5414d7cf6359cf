//! `tinypoet serve`: the browser page on a local address — the page's files (compiled into this
//! binary from `web/www/`), the WebAssembly engine (`bash web/build.sh` builds it) and the int8
//! model — with a small std-only HTTP/1.1 server that answers `GET`/`HEAD` for exactly those
//! six paths and nothing else (no file-system paths are ever read from a request).
//!
//! Why the wasm is not compiled in: it is another target's build of `tinypoet-web`; building it
//! from this crate's `build.rs` would make every trainer build need the wasm32 target and a
//! nested cargo. So the page files, which change with this binary, are embedded, and the two
//! large files are read once at start from the paths below (a clear error says how to build a
//! missing engine).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tinypoet_core::Model;

use super::generate::resolve_model_named;

/// The page's model when `--model` is not given: the aligned int8 blob (titles in, poems out;
/// about half the f16 size).
pub const WEB_MODEL: &str = "models/tinypoet-tang-aligned-int8.tpb";

/// Where `bash web/build.sh` leaves the engine, relative to the repository.
const WASM_PATHS: [&str; 2] = [
    "web/dist/tinypoet.wasm",
    "target/wasm32-unknown-unknown/web/tinypoet_web.wasm",
];

const INDEX_HTML: &str = include_str!("../../../web/www/index.html");
const MAIN_JS: &str = include_str!("../../../web/www/main.js");
const WORKER_JS: &str = include_str!("../../../web/www/worker.js");

/// Serve the browser page: title in, poem out, written in WebAssembly on this machine.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  bash web/build.sh && tinypoet serve     # then open http://127.0.0.1:8080/
  tinypoet serve --addr 127.0.0.1:0       # any free port (printed on stdout)
  tinypoet serve --model runs/tang/model-int8.tpb

Only 127.0.0.1 by default: pass --addr 0.0.0.0:8080 to let other machines in. The page loads
nothing from elsewhere. The engine (tinypoet.wasm) is built by `bash web/build.sh`; it is looked
up in web/dist/ and target/wasm32-unknown-unknown/web/ above the executable or the current
directory, or given with --wasm.")]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Model blob for the page (default: the bundled models/tinypoet-tang-aligned-int8.tpb).
    #[arg(long, value_name = "BLOB")]
    pub model: Option<PathBuf>,
    /// The WebAssembly engine (default: the output of `bash web/build.sh`).
    #[arg(long, value_name = "FILE")]
    pub wasm: Option<PathBuf>,
}

/// One response body with its type.
struct Asset {
    content_type: &'static str,
    body: Vec<u8>,
}

/// The six files of the page, by request path.
struct Site {
    index: Asset,
    main_js: Asset,
    worker_js: Asset,
    wasm: Asset,
    model: Asset,
}

impl Site {
    fn get(&self, path: &str) -> Option<&Asset> {
        // The query string (?title=…&seed=…) is the page's business.
        let path = path.split(['?', '#']).next().unwrap_or("");
        match path {
            "/" | "/index.html" => Some(&self.index),
            "/main.js" => Some(&self.main_js),
            "/worker.js" => Some(&self.worker_js),
            "/tinypoet.wasm" => Some(&self.wasm),
            "/model.tpb" => Some(&self.model),
            _ => None,
        }
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let model_path = resolve_model_named(args.model.as_deref(), WEB_MODEL)?;
    let model = std::fs::read(&model_path)
        .with_context(|| format!("cannot read model {}", model_path.display()))?;
    Model::load(&model).map_err(|e| {
        anyhow::anyhow!(
            "{}: corrupt or not a tinypoet model: {e}",
            model_path.display()
        )
    })?;
    let wasm_path = resolve_wasm(args.wasm.as_deref())?;
    let wasm = std::fs::read(&wasm_path)
        .with_context(|| format!("cannot read {}", wasm_path.display()))?;
    if !wasm.starts_with(b"\0asm") {
        bail!("{} is not a WebAssembly module", wasm_path.display());
    }
    let text = |s: &str, t: &'static str| Asset {
        content_type: t,
        body: s.as_bytes().to_vec(),
    };
    let site = Arc::new(Site {
        index: text(INDEX_HTML, "text/html; charset=utf-8"),
        main_js: text(MAIN_JS, "text/javascript; charset=utf-8"),
        worker_js: text(WORKER_JS, "text/javascript; charset=utf-8"),
        wasm: Asset {
            content_type: "application/wasm",
            body: wasm,
        },
        model: Asset {
            content_type: "application/octet-stream",
            body: model,
        },
    });

    let listener =
        TcpListener::bind(args.addr).with_context(|| format!("cannot listen on {}", args.addr))?;
    let local = listener.local_addr()?;
    crate::errln!(
        "[model {} · engine {} ({} bytes)]",
        model_path.display(),
        wasm_path.display(),
        site.wasm.body.len()
    );
    // The URL alone on stdout, so that scripts can read it (`--addr 127.0.0.1:0`).
    crate::outln!("http://{local}/");
    std::io::stdout().flush()?;
    crate::errln!("serving the page at http://{local}/ (Ctrl-C to stop)");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let site = Arc::clone(&site);
        // One thread per connection: a browser opens a few at once, and an idle one must not
        // hold up the others.
        std::thread::spawn(move || {
            let _ = handle(stream, &site);
        });
    }
    Ok(())
}

/// `--wasm`, else the `web/build.sh` output above the executable or the current directory.
fn resolve_wasm(arg: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = arg {
        if !p.is_file() {
            bail!("{} not found", p.display());
        }
        return Ok(p.to_path_buf());
    }
    let mut roots = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    for r in &roots {
        for rel in WASM_PATHS {
            let candidate = r.join(rel);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "the WebAssembly engine is not built: run `bash web/build.sh` in the repository (it needs \
         the wasm32-unknown-unknown target: `rustup target add wasm32-unknown-unknown`), or pass \
         --wasm FILE"
    )
}

/// Answer the requests of one connection (keep-alive), until it closes or idles for 30 s.
fn handle(stream: TcpStream, site: &Site) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        // Headers: read and ignore (no request here has a body we accept), up to 100 lines.
        let mut keep_alive = true;
        for _ in 0..100 {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if lower.starts_with("connection:") && lower.contains("close") {
                keep_alive = false;
            }
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, asset) = match (method, site.get(path)) {
            ("GET" | "HEAD", Some(a)) => ("200 OK", Some(a)),
            ("GET" | "HEAD", None) => ("404 Not Found", None),
            _ => ("405 Method Not Allowed", None),
        };
        let (content_type, body): (&str, &[u8]) = match asset {
            Some(a) => (a.content_type, &a.body),
            None => ("text/plain; charset=utf-8", status.as_bytes()),
        };
        write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n\
             Connection: {}\r\n\r\n",
            body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        )?;
        if method != "HEAD" {
            out.write_all(body)?;
        }
        out.flush()?;
        if !keep_alive || asset.is_none() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        let a = |b: &[u8]| Asset {
            content_type: "x",
            body: b.to_vec(),
        };
        Site {
            index: a(b"i"),
            main_js: a(b"m"),
            worker_js: a(b"w"),
            wasm: a(b"\0asm"),
            model: a(b"TINYPOET"),
        }
    }

    #[test]
    fn only_the_pages_files_are_served() {
        let s = site();
        assert_eq!(s.get("/").unwrap().body, b"i");
        assert_eq!(s.get("/?title=春&seed=7&write").unwrap().body, b"i");
        assert_eq!(s.get("/model.tpb").unwrap().body, b"TINYPOET");
        for p in [
            "/../Cargo.toml",
            "/etc/passwd",
            "//model.tpb",
            "",
            "/web/www/main.js",
        ] {
            assert!(s.get(p).is_none(), "{p}");
        }
    }

    #[test]
    fn a_connection_gets_the_page_and_a_404() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            handle(stream, &site()).unwrap();
        });
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /worker.js HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        std::io::Read::read_to_string(&mut c, &mut reply).unwrap();
        server.join().unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains("Content-Length: 1\r\n"), "{reply}");
        assert!(
            reply.contains("\r\n\r\nwHTTP/1.1 404 Not Found\r\n"),
            "{reply}"
        );
    }
}
