//! Frames on a libp2p stream: a 4-byte big-endian length, then the core's canonical bytes.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// Reads and writes one length-prefixed frame per request and per response,
/// refusing frames above `max_frame` before reading them.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    pub max_frame: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec {
            max_frame: scrip_proto::encoding::MAX_MESSAGE_LEN,
        }
    }
}

/// An inbound request keeps the protocol it arrived on, so the handler can
/// check that the message fits the protocol.
pub type InboundFrame = (StreamProtocol, Vec<u8>);

impl FrameCodec {
    async fn read_frame<T: AsyncRead + Unpin + Send>(&self, io: &mut T) -> io::Result<Vec<u8>> {
        let mut length = [0u8; 4];
        io.read_exact(&mut length).await?;
        let length = u32::from_be_bytes(length) as usize;
        if length > self.max_frame {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "frame of {length} bytes exceeds the limit of {}",
                    self.max_frame
                ),
            ));
        }
        let mut frame = vec![0u8; length];
        io.read_exact(&mut frame).await?;
        Ok(frame)
    }

    async fn write_frame<T: AsyncWrite + Unpin + Send>(
        &self,
        io: &mut T,
        frame: &[u8],
    ) -> io::Result<()> {
        if frame.len() > self.max_frame {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame of {} bytes exceeds the limit of {}",
                    frame.len(),
                    self.max_frame
                ),
            ));
        }
        io.write_all(&(frame.len() as u32).to_be_bytes()).await?;
        io.write_all(frame).await?;
        io.close().await
    }
}

impl libp2p::request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = InboundFrame;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<InboundFrame> {
        Ok((protocol.clone(), self.read_frame(io).await?))
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        self.read_frame(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        (_, frame): InboundFrame,
    ) -> io::Result<()> {
        self.write_frame(io, &frame).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        frame: Vec<u8>,
    ) -> io::Result<()> {
        self.write_frame(io, &frame).await
    }
}
