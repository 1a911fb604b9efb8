//! burn's side of the data: a `Dataset` of `(features, label)` items and a `Batcher` that
//! stacks them into `(images, targets)` tensors on any device. Images travel flat
//! (`[batch, features]`); a model that wants `[batch, c, h, w]` reshapes, since it knows
//! its own input shape.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::set::LabeledSet;

/// One sample as burn's `Dataset` hands it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Normalised features.
    pub features: Vec<f32>,
    /// Class label.
    pub label: u8,
}

/// A batch on a device.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[batch, features]` normalised inputs.
    pub images: Tensor<2>,
    /// `[batch]` class indices.
    pub targets: Tensor<1, Int>,
}

impl Dataset<Item> for LabeledSet {
    fn get(&self, index: usize) -> Result<Item, DatasetError> {
        assert!(
            index < self.len(),
            "index {index} out of bounds for {} samples",
            self.len()
        );
        Ok(Item {
            features: self.sample(index).to_vec(),
            label: self.labels[index],
        })
    }

    fn len(&self) -> usize {
        self.labels.len()
    }
}

/// Stacks [`Item`]s into a [`Batch`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ClassBatcher;

impl Batcher<Item, Batch> for ClassBatcher {
    fn batch(&self, items: Vec<Item>, device: &Device) -> Batch {
        let d = items.first().map_or(0, |i| i.features.len());
        let labels: Vec<u8> = items.iter().map(|i| i.label).collect();
        let features: Vec<f32> = items.into_iter().flat_map(|i| i.features).collect();
        make_batch(features, &labels, d, device)
    }
}

impl LabeledSet {
    /// The batch of samples at `indices`, copied straight from the flat buffer (the training
    /// loop's fast path; same tensors as going through [`ClassBatcher`]).
    pub fn batch(&self, indices: &[usize], device: &Device) -> Batch {
        self.batch_with(indices, device, |_| {})
    }

    /// As [`LabeledSet::batch`], with `f` applied to the gathered features on the host
    /// before they become a tensor (QAT observes and quantizes the network input there).
    pub fn batch_with(
        &self,
        indices: &[usize],
        device: &Device,
        f: impl FnOnce(&mut [f32]),
    ) -> Batch {
        let d = self.dim();
        let mut features = Vec::with_capacity(indices.len() * d);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            features.extend_from_slice(self.sample(i));
            labels.push(self.labels[i]);
        }
        f(&mut features);
        make_batch(features, &labels, d, device)
    }
}

fn make_batch(features: Vec<f32>, labels: &[u8], d: usize, device: &Device) -> Batch {
    let n = labels.len();
    let images = Tensor::<2>::from_data(TensorData::new(features, [n, d]), device);
    let targets = Tensor::<1, Int>::from_data(
        TensorData::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [n]),
        device,
    );
    Batch { images, targets }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batcher_and_fast_path_agree() {
        let set = LabeledSet {
            features: (0..12).map(|i| i as f32).collect(),
            labels: vec![0, 1, 2, 1],
            sample_shape: vec![3],
            num_classes: 3,
        };
        let device = Device::flex();
        let items = vec![set.get(2).unwrap(), set.get(0).unwrap()];
        let a = ClassBatcher.batch(items, &device);
        let b = set.batch(&[2, 0], &device);
        let av: Vec<f32> = a.images.into_data().try_to_vec().unwrap();
        let bv: Vec<f32> = b.images.into_data().try_to_vec().unwrap();
        assert_eq!(av, vec![6.0, 7.0, 8.0, 0.0, 1.0, 2.0]);
        assert_eq!(av, bv);
        let at: Vec<i64> = a.targets.into_data().convert::<i64>().try_to_vec().unwrap();
        assert_eq!(at, vec![2, 0]);
    }
}
