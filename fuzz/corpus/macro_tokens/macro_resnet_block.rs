
    /// ResNet's basic block.
    block basic(x, c, stride = 1) {
        let y = x.conv2d(out = c, k = 3, s = stride, p = 1, bias = false).batch_norm().relu()
            .conv2d(out = c, k = 3, p = 1, bias = false).batch_norm();
        let short = if stride != 1 || x.channels() != c {
            x.conv2d(out = c, k = 1, s = stride, bias = false).batch_norm()
        } else {
            x.identity()
        };
        add(y, short).relu()
    }
    network Tiny(x: [3, 8, 8]) -> (logits, both) {
        let feat = x.basic(c = 16, stride = 2).repeat(2, |y, i| y.basic(16)).global_avg_pool();
        let logits = feat.linear(out = 10, name = "head");
        let both = concat([feat, logits], axis = 0);
        (logits, both)
    }
    loss multiclass_hinge(margin = 1.0) for logits;
