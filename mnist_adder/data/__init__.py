"""The data: raw MNIST, the samples of each task, their data modules, photos prepared as MNIST's digits
were, and the arithmetic of sums. It imports nothing else of the project but `mnist_adder` itself."""
