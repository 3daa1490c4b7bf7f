# Sourced by benches/gpu/run.sh and ab.sh on a lent GPU machine: the Vulkan loader and the glvnd
# libraries NVIDIA's Vulkan driver loads through, unpacked from the Debian packages pack.sh
# downloaded into .gl (../shared/gpu/README.md), and a runtime folder for wgpu.
for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg}
mkdir -p "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
