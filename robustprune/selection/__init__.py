"""Selection layer: pure, seeded functions of per-example signals and a budget."""
