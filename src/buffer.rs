//! GPU buffers: a [`View`] is a range of 32-bit words in a storage buffer, the unit every kernel
//! binds. Parameters live packed in one buffer, so views carry an offset.

use crate::device::{blocking, Gpu};
use crate::{Error, Result};
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// Alignment, in bytes, of every view's offset (WebGPU's storage offset alignment is at most 256).
pub const VIEW_ALIGN: u64 = 256;

/// A range of 32-bit words (f32, i32 or u32) in a storage buffer.
#[derive(Clone, Debug)]
pub struct View {
    pub buffer: Arc<wgpu::Buffer>,
    /// Byte offset, a multiple of [`VIEW_ALIGN`].
    pub offset: u64,
    /// Length in 32-bit words.
    pub len: u64,
}

impl View {
    pub fn whole(buffer: Arc<wgpu::Buffer>) -> View {
        let len = buffer.size() / 4;
        View { buffer, offset: 0, len }
    }
    pub fn bytes(&self) -> u64 {
        self.len * 4
    }
    /// A sub-range of `len` words starting `start` words in; `start * 4` must stay aligned.
    pub fn slice(&self, start: u64, len: u64) -> View {
        debug_assert!(start + len <= self.len);
        View { buffer: self.buffer.clone(), offset: self.offset + start * 4, len }
    }
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            // A zero-length binding is invalid; kernels never read past `len` anyway.
            size: wgpu::BufferSize::new(self.bytes().max(4)),
        })
    }
}

pub const STORAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

impl Gpu {
    /// A zero-filled storage buffer of `words` 32-bit words (at least one).
    pub fn zeros(&self, label: &str, words: u64) -> Result<View> {
        let bytes = words.max(1) * 4;
        if bytes > self.limits.max_buffer_size {
            return Err(Error::Gpu {
                context: format!("allocating {label}"),
                msg: format!("{bytes} bytes exceed the adapter's max_buffer_size {}", self.limits.max_buffer_size),
            });
        }
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: STORAGE,
            mapped_at_creation: false,
        });
        self.count_created(bytes);
        self.check(&format!("allocating {label}"))?;
        Ok(View { buffer: Arc::new(buffer), offset: 0, len: words })
    }

    /// A storage buffer holding `data` (f32, i32 or u32 words).
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> Result<View> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.len() as u64 > self.limits.max_buffer_size {
            return Err(Error::Gpu {
                context: format!("uploading {label}"),
                msg: format!(
                    "{} bytes exceed the adapter's max_buffer_size {}",
                    bytes.len(),
                    self.limits.max_buffer_size
                ),
            });
        }
        let contents: Vec<u8> = if bytes.is_empty() { vec![0; 4] } else { bytes.to_vec() };
        let buffer = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &contents,
            usage: STORAGE,
        });
        self.count_created(contents.len() as u64);
        self.check(&format!("uploading {label}"))?;
        Ok(View { buffer: Arc::new(buffer), offset: 0, len: (bytes.len() / 4) as u64 })
    }

    /// A uniform buffer holding `bytes` (a kernel's `Params`).
    pub fn uniform(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        let buffer = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        self.count_created(buffer.size());
        buffer
    }

    /// A MAP_READ buffer of `bytes` (at least 4) that copies land in, for [`Gpu::map_read`].
    pub fn staging(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.count_created(buffer.size());
        self.check(&format!("allocating {label}"))?;
        Ok(buffer)
    }

    /// Overwrites a view with host data (through the queue: no allocation visible to the caller).
    pub fn write<T: bytemuck::Pod>(&self, view: &View, data: &[T]) -> Result<()> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.len() as u64 != view.bytes() {
            return Err(Error::Gpu {
                context: "write".into(),
                msg: format!("{} bytes written into a view of {} bytes", bytes.len(), view.bytes()),
            });
        }
        if !bytes.is_empty() {
            self.queue.write_buffer(&view.buffer, view.offset, bytes);
        }
        self.check("write")
    }

    /// Reads views back (off the hot path: tests, checks, checkpoints). One submit for all of them.
    pub fn read_many(&self, views: &[&View]) -> Result<Vec<Vec<f32>>> {
        blocking("reading buffers", self.read_many_async(views))
    }

    /// [`Gpu::read_many`] without blocking (the browser's form, where a read must yield to the
    /// event loop for the map to complete).
    pub async fn read_many_async(&self, views: &[&View]) -> Result<Vec<Vec<f32>>> {
        let total: u64 = views.iter().map(|v| v.bytes()).sum();
        let staging = self.staging("readback", total)?;
        let mut enc = self.encoder("readback");
        let mut at = 0;
        for v in views {
            if v.bytes() > 0 {
                enc.copy_buffer_to_buffer(&v.buffer, v.offset, &staging, at, v.bytes());
            }
            at += v.bytes();
        }
        self.submit(enc, "readback")?;
        let all = self.map_read_async(&staging, "readback").await?;
        let mut out = Vec::with_capacity(views.len());
        let mut at = 0usize;
        for v in views {
            out.push(all[at..at + v.len as usize].to_vec());
            at += v.len as usize;
        }
        Ok(out)
    }

    /// A MAP_READ buffer's contents as f32 words, once submitted work has filled it: maps, waits,
    /// copies out and unmaps, so the buffer can be filled again (staging buffers are reused).
    pub fn map_read(&self, staging: &wgpu::Buffer, context: &str) -> Result<Vec<f32>> {
        blocking(context, self.map_read_async(staging, context))
    }

    /// [`Gpu::map_read`] without blocking: natively the device is polled until the map completes;
    /// in the browser the map completes while the caller yields to the event loop.
    pub async fn map_read_async(&self, staging: &wgpu::Buffer, context: &str) -> Result<Vec<f32>> {
        let slice = staging.slice(..);
        let (tx, rx) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait(context)?;
        let err = |msg: String| Error::Gpu { context: context.into(), msg };
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.check(context)?;
                return Err(err(e.to_string()));
            }
            Err(_) => return Err(err("map callback never ran".into())),
        }
        // Errors the device reported while the step ran (in the browser they arrive meanwhile).
        self.check(context)?;
        let words = {
            let mapped = slice.get_mapped_range().map_err(|e| err(e.to_string()))?;
            bytemuck::cast_slice::<u8, f32>(&mapped).to_vec()
        };
        staging.unmap();
        Ok(words)
    }

    pub fn read(&self, view: &View) -> Result<Vec<f32>> {
        Ok(self.read_many(&[view])?.pop().unwrap_or_default())
    }
}
