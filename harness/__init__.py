"""pfdiff's harness: the simulated Linux 4.0 kernel, the generic-handler variants, the fault loop,
outcomes, comparison and reports. It finds arches only through the registry in arches/."""
