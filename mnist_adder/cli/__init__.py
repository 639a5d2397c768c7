"""The commands: each stands on the library (mnist_adder) and none imports another."""
