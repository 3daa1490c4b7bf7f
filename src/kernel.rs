//! A [`Kernel`] is one compiled dispatch: a cached pipeline, its bind group (uniform `Params` at
//! binding 0, storage views at bindings 1..) and its workgroup grid. Kernels are built once, when a
//! program is planned; recording them into a pass creates nothing.

use crate::buffer::View;
use crate::device::Gpu;
use crate::{Error, Result};
use std::sync::Arc;

/// Largest workgroup count per grid dimension WebGPU guarantees.
pub const MAX_GROUPS_PER_DIM: u64 = 65_535;

/// A 2-D grid holding `groups` workgroups; shaders recover the linear id as
/// `wid.x + wid.y * nwg.x` and skip ids past the end.
pub fn grid(groups: u64) -> [u32; 3] {
    let groups = groups.max(1);
    if groups <= MAX_GROUPS_PER_DIM {
        [groups as u32, 1, 1]
    } else {
        [MAX_GROUPS_PER_DIM as u32, groups.div_ceil(MAX_GROUPS_PER_DIM) as u32, 1]
    }
}

/// How many workgroups a dispatch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// One invocation per unit of work: ceil(n / the shader's workgroup size) workgroups.
    Invocations(u64),
    /// One workgroup per unit of work (a row, a channel, a chunk).
    Workgroups(u64),
}

pub struct Kernel {
    pub label: String,
    pub shader: &'static str,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
    /// Floating-point operations and bytes moved per dispatch (for the benchmark's rates).
    pub flops: u64,
    pub bytes: u64,
    /// Size of its uniform `Params` buffer.
    pub uniform_bytes: u64,
    _params: wgpu::Buffer,
}

impl Kernel {
    /// Builds a dispatch of `shader` with `params` and storage `views`. Every view is checked
    /// against the adapter's storage binding limit first.
    pub fn new<P: bytemuck::Pod>(
        gpu: &Gpu,
        shader: &'static str,
        label: &str,
        params: &P,
        views: &[&View],
        dispatch: Dispatch,
    ) -> Result<Kernel> {
        let wg = crate::shaders::get(shader)
            .ok_or_else(|| Error::op(label, format!("no shader named {shader}")))?
            .workgroup as u64;
        let groups = match dispatch {
            Dispatch::Invocations(n) => n.div_ceil(wg),
            Dispatch::Workgroups(n) => n,
        };
        let max = gpu.limits.max_storage_buffer_binding_size;
        for (i, v) in views.iter().enumerate() {
            if v.bytes() > max {
                return Err(Error::op(
                    label,
                    format!(
                        "binding {} needs {} bytes but the adapter's max_storage_buffer_binding_size is {max}",
                        i + 1,
                        v.bytes()
                    ),
                ));
            }
        }
        let pipeline = gpu.pipeline(shader)?;
        let params_buf = gpu.uniform(&format!("{label}.params"), bytemuck::bytes_of(params));
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params_buf.as_entire_binding() }];
        for (i, v) in views.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: v.binding() });
        }
        let layout = pipeline.get_bind_group_layout(0);
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &layout,
            entries: &entries,
        });
        gpu.check(&format!("building {label} ({shader})"))?;
        let bytes = views.iter().map(|v| v.bytes()).sum();
        Ok(Kernel {
            label: label.into(),
            shader,
            pipeline,
            bind_group,
            groups: grid(groups),
            flops: 0,
            bytes,
            uniform_bytes: params_buf.size(),
            _params: params_buf,
        })
    }

    /// Sets the work a dispatch does: `flops` (a multiply-add counts 2).
    pub fn flops(mut self, flops: u64) -> Self {
        self.flops = flops;
        self
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
}

/// A flat list of kernels recorded in order into one compute pass.
#[derive(Default)]
pub struct Program {
    pub kernels: Vec<Kernel>,
}

impl Program {
    pub fn push(&mut self, k: Kernel) {
        self.kernels.push(k);
    }
    pub fn extend(&mut self, p: Program) {
        self.kernels.extend(p.kernels);
    }
    pub fn record(&self, enc: &mut wgpu::CommandEncoder, label: &str) {
        let mut pass =
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes: None });
        for k in &self.kernels {
            k.record(&mut pass);
        }
    }
    /// Times each kernel: GPU timestamp queries where the adapter has them, else wall-clock time per
    /// kernel (one submit and wait each). For profiling, off the step path.
    pub fn time(gpu: &Gpu, kernels: &[&Kernel]) -> Result<Vec<f64>> {
        if kernels.is_empty() {
            return Ok(Vec::new());
        }
        if !gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            let mut v = Vec::new();
            for k in kernels {
                let t = web_time::Instant::now();
                let mut enc = gpu.encoder("profile");
                {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(&k.label),
                        timestamp_writes: None,
                    });
                    k.record(&mut pass);
                }
                gpu.submit(enc, "profile")?;
                gpu.wait("profile")?;
                v.push(t.elapsed().as_secs_f64());
            }
            return Ok(v);
        }
        let n = kernels.len() as u32;
        let qs = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * n,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile timestamps"),
            size: 16 * n as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        gpu.count_created(resolve.size());
        let mut enc = gpu.encoder("profile");
        for (i, k) in kernels.iter().enumerate() {
            let tw = wgpu::ComputePassTimestampWrites {
                query_set: &qs,
                beginning_of_pass_write_index: Some(2 * i as u32),
                end_of_pass_write_index: Some(2 * i as u32 + 1),
            };
            let mut pass = enc
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(&k.label), timestamp_writes: Some(tw) });
            k.record(&mut pass);
        }
        enc.resolve_query_set(&qs, 0..2 * n, &resolve, 0);
        gpu.submit(enc, "profile")?;
        let raw = gpu.read(&View::whole(Arc::new(resolve)))?;
        let tick = |i: usize| (raw[2 * i].to_bits() as u64) | ((raw[2 * i + 1].to_bits() as u64) << 32);
        let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
        Ok((0..kernels.len()).map(|i| tick(2 * i + 1).saturating_sub(tick(2 * i)) as f64 * period).collect())
    }

    /// Records, submits and waits: for one-off use (tests, examples), not the training step.
    pub fn run(&self, gpu: &Gpu, label: &str) -> Result<()> {
        let mut enc = gpu.encoder(label);
        self.record(&mut enc, label);
        gpu.submit(enc, label)?;
        gpu.wait(label)
    }
}

impl From<Kernel> for Program {
    fn from(k: Kernel) -> Program {
        Program { kernels: vec![k] }
    }
}
