//! `upstream`: the smallest useful HTTP/1.1 origin for the gateway benchmark (`bench/gateway`).
//!
//! Answers every request, whatever its method or path, with `200` and the fixed JSON body
//! `{"ok":true}` after draining the request body. Connections are kept alive. It does no other
//! work, so a load test against it measures the load generator and the loopback stack; the same
//! test through `tether gateway` then shows what the gateway adds.
//!
//! ```text
//! upstream [--listen 127.0.0.1:9000]
//! ```
//!
//! Prints `listening on http://ADDR` to stderr once bound (with the real port when `--listen`
//! names port 0), then serves until killed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = br#"{"ok":true}"#;

#[derive(Parser)]
#[command(name = "upstream", about = "Minimal HTTP/1.1 server answering every request 200 {\"ok\":true}")]
struct Args {
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);

    let mut builder = http1::Builder::new();
    builder.keep_alive(true);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Typically EMFILE under an oversized test: back off instead of spinning.
                eprintln!("upstream: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Small responses: do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let conn = builder.serve_connection(TokioIo::new(stream), service_fn(handle));
        tokio::spawn(async move {
            // A peer closing mid-request is normal at the end of a load test.
            let _ = conn.await;
        });
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Drain the body so that the connection can carry the next request.
    let _ = req.into_body().collect().await;
    let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}
