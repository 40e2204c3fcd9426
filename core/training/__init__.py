"""Training and measuring the models: training loop, evaluation, metrics, the
MFCC baseline, calibration and the model card.
"""

