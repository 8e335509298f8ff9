
    /// LeNet-5, as in the crash course.
    pub network LeNet5(x: [1, 32, 32]) -> logits: [10] {
        x.conv2d(6, k = 5).relu().max_pool2d(2)
         .conv2d(16, k = 5).relu().max_pool2d(2)
         .conv2d(120, k = 5).relu().flatten()
         .linear(84).relu()
         .linear(10)
    }
    loss cross_entropy;
