"""What training, evaluation and prediction share about data: image transforms, collators, labels and TTA views."""
