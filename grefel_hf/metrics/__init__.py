"""Classification metrics shared by training, evaluation and the model card (one implementation of each number)."""
