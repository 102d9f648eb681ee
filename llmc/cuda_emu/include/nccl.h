// With -Illmc/cuda_emu/include, `#include <nccl.h>` in an emulated build (-DLLMC_CUDA_EMU
// -DLLMC_EMU_MPI) gets the emulation's NCCL over MPI (../emu_nccl.h) instead of the library.
#include "../cuda_emu.h"
#include "../emu_nccl.h"
