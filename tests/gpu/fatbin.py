"""Which GPU code a shared library carries: the architectures of the machine code (cubins) and of
the PTX in its CUDA fat binaries, read from the ELF section `.nv_fatbin` (what `cuobjdump
--list-elf --list-ptx` lists, without needing a CUDA toolkit)."""

import struct

FATBIN_MAGIC = 0xBA55ED50
KIND_PTX, KIND_CUBIN = 1, 2


def _section(data, wanted):
  """Bytes of the ELF64 section named `wanted`, or b"" when there is none."""
  (section_headers,) = struct.unpack_from("<Q", data, 0x28)
  entry_size, count, names_index = struct.unpack_from("<HHH", data, 0x3A)
  sections = [struct.unpack_from("<IIQQQQ", data, section_headers + i * entry_size)
              for i in range(count)]
  names_offset = sections[names_index][4]
  for name, _, _, _, offset, size in sections:
    end = data.index(b"\0", names_offset + name)
    if data[names_offset + name:end].decode() == wanted:
      return data[offset:offset + size]
  return b""


def gpu_code(path):
  """({cubin architectures}, {PTX architectures}) as strings, e.g. ({"70", "80"}, {"90"})."""
  with open(path, "rb") as f:
    blob = _section(f.read(), ".nv_fatbin")
  cubins, ptx = set(), set()
  position = 0
  while position + 16 <= len(blob):
    magic, _, header_size, fat_size = struct.unpack_from("<IHHQ", blob, position)
    if magic != FATBIN_MAGIC:  # padding between fat binaries
      position += 8
      continue
    entry, end = position + header_size, position + header_size + fat_size
    while entry < end:
      kind, _, entry_header_size, payload_size = struct.unpack_from("<HHIQ", blob, entry)
      (arch,) = struct.unpack_from("<I", blob, entry + 28)
      {KIND_CUBIN: cubins, KIND_PTX: ptx}[kind].add(str(arch))
      entry += entry_header_size + payload_size
    position = end
  return cubins, ptx
