// The upper halves of the YMM/ZMM registers after an AVX kernel returns to baseline code.
//
// GCC 12 leaves them dirty whenever a kernel's last vector instructions are 128-bit (every
// horizontal sum ends that way): its vzeroupper pass sees no live 256-bit value and emits none.
// Code of the baseline build is legacy-SSE encoded (all its scalar float math), and with dirty
// upper halves each such instruction merges into the full register: on Zen 4 the greedy sampler
// ran 3x slower after the LM head's GEMV than in isolation. So control returns from the kernels
// through clean_upper(), and tests check upper_dirty() after every kernel table entry.
#pragma once

namespace fineserve::simd {

// vzeroupper where the CPU and OS run AVX; nothing elsewhere (the instruction would fault).
void clean_upper();

// Whether this CPU reports which register state is in use (XGETBV with ECX = 1).
bool upper_state_readable();

// True while the AVX or AVX-512 upper state is in use (bits 2 and 6 of that report); false where
// the CPU cannot say.
bool upper_dirty();

}  // namespace fineserve::simd
