"""The run machinery: what the commands share (setup, one-line errors, the final report), run folders,
launching, callbacks, Hydra plugins, results tables and provenance. It stands on `mnist_adder.data`,
never on `mnist_adder.models`."""
