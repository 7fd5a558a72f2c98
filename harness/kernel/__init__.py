"""The simulated Linux 4.0 kernel the fault handlers run in (constants, mm, handle_mm_fault, task)."""

from .kernel import Event, Kernel, KernelBug, KernelConfig, KernelExit, MmCall, Oops, SigInfo, Task
from .mm import FileBacking, MmLimits, MmStruct, Pte, Vma

__all__ = ["Event", "FileBacking", "Kernel", "KernelBug", "KernelConfig", "KernelExit", "MmCall",
           "MmLimits", "MmStruct", "Oops", "Pte", "SigInfo", "Task", "Vma"]
