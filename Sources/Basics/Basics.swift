// Basics: seeded randomness, JSON values and length notation shared by every layer.
//
// A pure target at the bottom of the dependency graph: no dependencies, no file or network I/O.
