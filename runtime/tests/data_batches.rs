//! The mini-batch iterator, subsets, splits, normalization and augmentation.

use std::sync::Arc;

use kiln_runtime::data::augment::{add_noise, example_rng, hflip, pad_crop, rotate_scale};
use kiln_runtime::data::{Augment, BatchConfig, Dataset, Normalize};
use kiln_runtime::rng::Rng;

/// A data set of `n` 1×2×3 images whose pixels encode their index.
fn toy(n: usize) -> Arc<Dataset> {
    let images = (0..n)
        .flat_map(|i| (0..6).map(move |p| (i * 6 + p) as f32))
        .collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    Arc::new(Dataset::new(images, labels, [1, 2, 3], 10).unwrap())
}

/// The index order of one epoch and the batch sizes it gave.
fn epoch(data: &Arc<Dataset>, cfg: &BatchConfig, e: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order = Vec::new();
    let mut sizes = Vec::new();
    for b in data.batches(cfg, e).unwrap() {
        assert_eq!(b.shape, [b.len(), 1, 2, 3]);
        for (k, &i) in b.indices.iter().enumerate() {
            assert_eq!(b.labels[k], data.labels[i]);
            assert_eq!(&b.images[k * 6..(k + 1) * 6], data.image(i));
        }
        sizes.push(b.len());
        order.extend(b.indices);
    }
    (order, sizes)
}

/// Checks one epoch of `n` examples under `cfg`: the batch sizes, and that
/// every example appears exactly once (or, with drop_last, at most once).
fn check(n: usize, cfg: &BatchConfig, sizes: &[usize]) {
    let data = toy(n);
    let (order, got) = epoch(&data, cfg, 0);
    assert_eq!(got, sizes);
    let mut seen = vec![0; n];
    for i in order {
        seen[i] += 1;
    }
    let covered = seen.iter().filter(|&&s| s == 1).count();
    assert!(seen.iter().all(|&s| s <= 1));
    assert_eq!(covered, sizes.iter().sum::<usize>());
}

#[test]
fn every_example_once_per_epoch() {
    check(10, &BatchConfig::new(4), &[4, 4, 2]);
    check(10, &BatchConfig::new(4).drop_last(true), &[4, 4]);
    check(12, &BatchConfig::new(4).drop_last(true), &[4, 4, 4]);
    check(3, &BatchConfig::new(8), &[3]);
    check(3, &BatchConfig::new(8).drop_last(true), &[]);
    check(
        1000,
        &BatchConfig::new(64).shuffle(false),
        &[&[64; 15][..], &[40]].concat(),
    );
}

#[test]
fn shuffle_is_seeded_and_changes_across_epochs() {
    let data = toy(500);
    let cfg = BatchConfig::new(50).seed(42);
    let (a0, _) = epoch(&data, &cfg, 0);
    let (b0, _) = epoch(&data, &cfg, 0);
    let (a1, _) = epoch(&data, &cfg, 1);
    let (c0, _) = epoch(&data, &cfg.clone().seed(43), 0);
    assert_eq!(a0, b0);
    assert_ne!(a0, a1);
    assert_ne!(a0, c0);
    assert_ne!(a0, (0..500).collect::<Vec<_>>());
    let (plain, _) = epoch(&data, &cfg.clone().shuffle(false), 3);
    assert_eq!(plain, (0..500).collect::<Vec<_>>());
}

#[test]
fn dropping_early_stops_the_producer() {
    let data = toy(10_000);
    for take in [0, 1, 3] {
        let mut it = data.batches(&BatchConfig::new(10), 0).unwrap();
        assert_eq!(it.len(), 1000);
        for _ in 0..take {
            assert!(it.next().is_some());
        }
        drop(it); // Joins the producer; a hang here fails the test by timeout.
    }
    // Only the data set's own handle is left: the thread released its clone.
    assert_eq!(Arc::strong_count(&data), 1);
}

#[test]
fn bad_configurations_are_errors() {
    let data = toy(4);
    let e = data
        .batches(&BatchConfig::new(0), 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("batch size must be positive"), "{e}");
    let cfg = BatchConfig::new(2).normalize(Normalize::new(vec![0.0; 3], vec![1.0; 3]).unwrap());
    let e = data.batches(&cfg, 0).unwrap_err().to_string();
    assert!(e.contains("3 channels but the images have 1"), "{e}");
    assert!(Normalize::new(vec![0.0], vec![0.0]).is_err());
    // Building a data set checks sizes, shape and labels.
    let cases: &[(usize, &[u8], [usize; 3], &str)] = &[
        (5, &[0, 1], [1, 1, 2], "5 image values do not make 2 images"),
        (
            4,
            &[0, 3],
            [1, 1, 2],
            "label 3 of example 1 is not below the class count 3",
        ),
        (0, &[], [1, 0, 2], "zero dimension"),
        (0, &[], [usize::MAX, 2, 2], "too large"),
    ];
    for &(n, labels, shape, expect) in cases {
        let e = Dataset::new(vec![0.0; n], labels.to_vec(), shape, 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains(expect), "`{e}` lacks `{expect}`");
    }
}

#[test]
fn subsets_and_splits() {
    let data = toy(100);
    let first = data.first(5);
    assert_eq!(first.labels, [0, 1, 2, 3, 4]);
    assert_eq!(first.images, data.images[..30]);
    let r = data.random_subset(10, 7);
    assert_eq!(r, data.random_subset(10, 7));
    assert_ne!(r, data.random_subset(10, 8));
    assert_eq!(r.len(), 10);
    let (train, val) = data.split(20, 1).unwrap();
    assert_eq!((train.len(), val.len()), (80, 20));
    // Together they hold every example once: pixel 0 of image i is 6i.
    let mut ids: Vec<usize> = train
        .images
        .chunks(6)
        .chain(val.images.chunks(6))
        .map(|im| im[0] as usize / 6)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..100).collect::<Vec<_>>());
    assert!(data.split(101, 1).is_err());
    assert!(data.subset(&[100]).is_err());
}

#[test]
fn padding_to_a_larger_image() {
    // Two 1×2×3 images padded by 1: 4×5 each, the original in the middle.
    let p = toy(2).padded(1);
    assert_eq!(
        (p.shape, p.len(), p.labels.clone()),
        ([1, 4, 5], 2, vec![0, 1])
    );
    #[rustfmt::skip]
    let want = [
        0.0, 0.0, 0.0, 0.0, 0.0,
        0.0, 6.0, 7.0, 8.0, 0.0,
        0.0, 9.0, 10.0, 11.0, 0.0,
        0.0, 0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(p.image(1), want);
    assert_eq!(toy(3).padded(0), *toy(3));
}

#[test]
fn normalization_from_data_and_given() {
    let mut d = Dataset::new(
        vec![0.0, 1.0, 2.0, 3.0, 10.0, 10.0, 10.0, 10.0],
        vec![0, 1],
        [2, 1, 2],
        2,
    )
    .unwrap();
    let n = Normalize::from_data(&d);
    // Channel 0 holds 0, 1, 10, 10; channel 1 holds 2, 3, 10, 10.
    assert_eq!(n.mean, [5.25, 6.25]);
    let std0 =
        ((0.0f64 - 5.25).powi(2) + (1.0f64 - 5.25).powi(2) + 2.0 * (10.0f64 - 5.25).powi(2)) / 4.0;
    assert!((n.std[0] as f64 - std0.sqrt()).abs() < 1e-6);
    d.normalize(&n).unwrap();
    let after = Normalize::from_data(&d);
    for c in 0..2 {
        assert!(after.mean[c].abs() < 1e-6 && (after.std[c] - 1.0).abs() < 1e-5);
    }
    let mut px = [0.0f32, 1.0];
    Normalize::mnist().apply(&mut px, [1, 1, 2]).unwrap();
    assert!((px[0] - (-0.1307 / 0.3081)).abs() < 1e-6);
    assert!((px[1] - ((1.0 - 0.1307) / 0.3081)).abs() < 1e-6);
}

#[test]
fn augmentations() {
    let shape = [2, 4, 5];
    let img: Vec<f32> = (0..40).map(|i| i as f32).collect();
    // Flip twice is the identity; once, it mirrors rows.
    let mut f = img.clone();
    hflip(&mut f, shape);
    assert_eq!(&f[..5], &[4.0, 3.0, 2.0, 1.0, 0.0]);
    hflip(&mut f, shape);
    assert_eq!(f, img);
    // Crop with padding keeps the shape; the centre offset is the identity.
    let mut out = vec![-1.0; 40];
    pad_crop(&img, shape, 2, 2, 2, &mut out);
    assert_eq!(out, img);
    pad_crop(&img, shape, 2, 0, 4, &mut out);
    assert_eq!(&out[..5], &[0.0; 5]); // Two rows of padding on top.
    assert_eq!(&out[10..15], &[2.0, 3.0, 4.0, 0.0, 0.0]); // Shifted left by 2.
    // Rotation by 0 and scale 1 is the identity; by 90° it moves pixels.
    rotate_scale(&img, shape, 0.0, 1.0, &mut out);
    assert!(out.iter().zip(&img).all(|(a, b)| (a - b).abs() < 1e-4));
    let sq: Vec<f32> = (0..9).map(|i| i as f32).collect();
    let mut r = vec![0.0; 9];
    rotate_scale(&sq, [1, 3, 3], std::f32::consts::FRAC_PI_2, 1.0, &mut r);
    // Counter-clockwise as seen on screen: the right column becomes the top row.
    let want = [2.0, 5.0, 8.0, 1.0, 4.0, 7.0, 0.0, 3.0, 6.0];
    assert!(
        r.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-4),
        "{r:?}"
    );
    // Noise has the stated standard deviation.
    let mut z = vec![0.0f32; 100_000];
    add_noise(&mut z, 0.25, &mut Rng::new(5));
    let m = z.iter().map(|&x| x as f64).sum::<f64>() / z.len() as f64;
    let s = (z.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / z.len() as f64).sqrt();
    assert!(
        m.abs() < 0.005 && (s - 0.25).abs() < 0.0025,
        "mean {m} std {s}"
    );
}

#[test]
fn augmented_batches_are_deterministic_per_seed_epoch_index() {
    let data = toy(64);
    let aug = Augment {
        noise_std: 0.1,
        ..Augment::cifar10()
    };
    let cfg = BatchConfig::new(16).seed(9).augment(aug.clone());
    let run = |cfg: &BatchConfig, e| data.batches(cfg, e).unwrap().collect::<Vec<_>>();
    let a = run(&cfg, 0);
    assert_eq!(a, run(&cfg, 0));
    assert_ne!(a, run(&cfg, 1));
    assert_ne!(a, run(&cfg.clone().seed(10), 0));
    // Each example's augmentation depends only on (seed, epoch, index), not
    // on where it lands: unshuffled batches agree with the shuffled ones.
    let plain = run(&cfg.clone().shuffle(false), 0);
    let per_index = |bs: &[kiln_runtime::data::Batch]| {
        let mut v: Vec<(usize, Vec<f32>)> = bs
            .iter()
            .flat_map(|b| {
                b.indices
                    .iter()
                    .enumerate()
                    .map(|(k, &i)| (i, b.images[k * 6..(k + 1) * 6].to_vec()))
            })
            .collect();
        v.sort_by_key(|p| p.0);
        v
    };
    assert_eq!(per_index(&a), per_index(&plain));
    // And they match applying the augmentation by hand.
    let mut im = data.image(5).to_vec();
    aug.apply(
        &mut im,
        data.shape,
        &mut example_rng(9, 0, 5),
        &mut Vec::new(),
    );
    assert_eq!(per_index(&a)[5].1, im);
}

#[test]
fn a_full_mnist_epoch_normalized_and_augmented() {
    let dir = kiln_runtime::data::data_dir().join("mnist");
    let train =
        Arc::new(kiln_runtime::data::load_mnist(&dir, kiln_runtime::data::Split::Train).unwrap());
    let cfg = BatchConfig::new(64)
        .seed(3)
        .drop_last(true)
        .augment(Augment::digits())
        .normalize(Normalize::mnist());
    let t = std::time::Instant::now();
    let mut seen = vec![false; train.len()];
    let mut batches = 0;
    let mut sum = 0.0f64;
    for b in train.batches(&cfg, 0).unwrap() {
        assert_eq!(b.shape, [64, 1, 28, 28]);
        for &i in &b.indices {
            assert!(!std::mem::replace(&mut seen[i], true));
        }
        sum += b.images.iter().map(|&x| x as f64).sum::<f64>();
        batches += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "one MNIST epoch, batch 64, rotate/scale + normalize: {batches} batches in {secs:.2} s ({:.0} images/s)",
        (batches * 64) as f64 / secs
    );
    assert_eq!(batches, 60_000 / 64);
    assert_eq!(seen.iter().filter(|&&s| s).count(), 937 * 64);
    // Normalized with the data's own statistics the mean is near 0 (the
    // rotation's zero fill and interpolation move it a little).
    let mean = sum / (937.0 * 64.0 * 784.0);
    assert!(mean.abs() < 0.1, "{mean}");
}
