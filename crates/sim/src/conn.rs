//! One CSTA connection: reads 8-byte frames, decodes them and hands them to the switch task;
//! writes the frames the switch task queues for it (batching what is already queued). A bad
//! frame is logged and skipped; only lost framing (a length below 8) closes the connection.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use ctid_csta::frame::{decode_frame, FrameItem, MAX_FRAME_LEN};
use ctid_csta::{decode_with, CodecOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::actor::Cmd;
use crate::record::{Dir, Recorder};

/// Most bytes written in one batch.
const BATCH: usize = 256 * 1024;

pub(crate) struct ConnTask {
    pub id: u64,
    pub peer: SocketAddr,
    pub cmd: mpsc::Sender<Cmd>,
    pub rx: mpsc::Receiver<Bytes>,
    pub kill: oneshot::Receiver<()>,
    pub opts: CodecOptions,
    pub recorder: Option<Recorder>,
    pub cancel: CancellationToken,
}

impl ConnTask {
    pub(crate) async fn run(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let mut inbuf = BytesMut::with_capacity(16 * 1024);
        let mut outbuf = BytesMut::with_capacity(16 * 1024);
        let id = self.id;
        // the kill switch: fired = drop now; its sender dropped = the switch let go of us, so
        // flush what is queued and close when the queue ends
        let mut kill_armed = true;
        let why = loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break "shutdown",
                k = &mut self.kill, if kill_armed => {
                    if k.is_ok() {
                        break "dropped by the switch";
                    }
                    kill_armed = false;
                }
                out = self.rx.recv() => {
                    let Some(frame) = out else { break "closed by the switch" };
                    outbuf.clear();
                    self.note_out(&frame);
                    outbuf.extend_from_slice(&frame);
                    while outbuf.len() < BATCH {
                        match self.rx.try_recv() {
                            Ok(f) => { self.note_out(&f); outbuf.extend_from_slice(&f); }
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = wr.write_all(&outbuf).await {
                        warn!(conn = id, error = %e, "write failed");
                        break "write failed";
                    }
                }
                n = rd.read_buf(&mut inbuf) => {
                    match n {
                        Ok(0) => break "closed by peer",
                        Err(e) => { debug!(conn = id, error = %e, "read failed"); break "read failed" }
                        Ok(_) => {}
                    }
                    if !self.drain_frames(&mut inbuf).await {
                        break "framing lost";
                    }
                }
            }
        };
        let _ = wr.shutdown().await;
        info!(conn = id, peer = %self.peer, why, "CSTA connection closed");
        let _ = self.cmd.send(Cmd::Closed { id }).await;
    }

    fn note_out(&self, frame: &Bytes) {
        if let Some(r) = &self.recorder {
            r.frame(self.id, Dir::Out, frame);
        }
    }

    /// Hand every whole frame in `buf` to the switch task; `false` when framing is lost.
    async fn drain_frames(&mut self, buf: &mut BytesMut) -> bool {
        loop {
            match decode_frame(buf, MAX_FRAME_LEN) {
                Ok(None) => return true,
                Ok(Some(FrameItem::Skipped { error, raw })) => {
                    if let Some(r) = &self.recorder {
                        r.frame(self.id, Dir::In, &raw);
                    }
                    warn!(conn = self.id, %error, bytes = raw.len(), "bad frame skipped");
                }
                Ok(Some(FrameItem::Frame(f))) => {
                    if let Some(r) = &self.recorder {
                        r.xml(self.id, Dir::In, &f.invoke_id.to_string(), &f.xml);
                    }
                    let msg = decode_with(&f.xml, &self.opts).map(|d| d.message);
                    let cmd = Cmd::Inbound {
                        id: self.id,
                        invoke: f.invoke_id,
                        xml: f.xml,
                        msg,
                    };
                    if self.cmd.send(cmd).await.is_err() {
                        return false;
                    }
                }
                Err(e) => {
                    if let Some(r) = &self.recorder {
                        r.frame(self.id, Dir::In, &buf.split().freeze());
                    }
                    warn!(conn = self.id, error = %e, "framing lost; closing the connection");
                    return false;
                }
            }
        }
    }
}
