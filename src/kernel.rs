//! A [`Kernel`] is one compiled dispatch: a cached pipeline, its bind group (uniform `Params` at
//! binding 0, storage views at bindings 1..) and its workgroup grid. Kernels are built once, when a
//! program is planned; recording them into a pass creates nothing.

use crate::buffer::View;
use crate::device::Gpu;
use crate::{Error, Result};
use std::sync::Arc;
use wgpu::util::DeviceExt;

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

pub struct Kernel {
    pub label: String,
    pub shader: &'static str,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
    /// Floating-point operations and bytes moved per dispatch (for the benchmark's rates).
    pub flops: u64,
    pub bytes: u64,
    _params: wgpu::Buffer,
}

impl Kernel {
    /// Builds a dispatch of `shader` over `groups` workgroups with `params` and storage `views`.
    /// Every view is checked against the adapter's storage binding limit first.
    pub fn new<P: bytemuck::Pod>(
        gpu: &Gpu,
        shader: &'static str,
        label: &str,
        params: &P,
        views: &[&View],
        groups: u64,
    ) -> Result<Kernel> {
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
        let params_buf = gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(&format!("{label}.params")),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
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
    /// Records, submits and waits: for one-off use (tests, examples), not the training step.
    pub fn run(&self, gpu: &Gpu, label: &str) -> Result<()> {
        let mut enc = gpu.encoder(label);
        self.record(&mut enc, label);
        gpu.submit(enc, label)?;
        gpu.wait(label)
    }
}
