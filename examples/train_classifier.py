"""Train a small classifier with minilean.nn and minilean.optim on data made right here.

Three interleaved spirals in the plane (one per class), a two-hidden-layer MLP, cross-entropy,
Adam with a warm-up + cosine learning-rate schedule, and gradient clipping: the same pieces a
larger model's training loop uses. It prints the loss as it goes and the final accuracy on
held-out points.

Run:  python examples/train_classifier.py
"""
import numpy

import minilean as ml
from minilean import nn, optim
from minilean.nn import functional as F


def make_spirals(points_per_class, classes=3, noise=0.15, seed=0):
    """Points (N, 2) float32 and labels (N,) int64: class k lies on the k-th arm of a spiral."""
    rng = numpy.random.default_rng(seed)
    radius = rng.random((classes, points_per_class))
    angle = (4.0 * radius + 2 * numpy.pi * numpy.arange(classes)[:, None] / classes
             + noise * rng.standard_normal((classes, points_per_class)))
    points = numpy.stack([radius * numpy.cos(angle), radius * numpy.sin(angle)], axis=-1)
    labels = numpy.repeat(numpy.arange(classes), points_per_class)
    return points.reshape(-1, 2).astype(numpy.float32), labels  # (classes * n, 2), (classes * n,)


def accuracy(model, points, labels):
    with ml.no_grad():
        predicted = model(ml.tensor(points)).argmax(dim=1).numpy()
    return float((predicted == labels).mean())


def main(steps=300, batch_size=64, seed=0):
    ml.manual_seed(seed)
    train_points, train_labels = make_spirals(300, seed=seed)
    test_points, test_labels = make_spirals(100, seed=seed + 1)

    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 3))
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    scheduler = optim.warmup_cosine_scheduler(optimizer, warmup_steps=30, total_steps=steps)
    rng = numpy.random.default_rng(seed)

    for step in range(steps):
        batch = rng.integers(0, len(train_points), batch_size)
        logits = model(ml.tensor(train_points[batch]))
        loss = F.cross_entropy(logits, ml.tensor(train_labels[batch]))
        optimizer.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), max_norm=1.0)
        step_lr = optimizer.lr  # the rate this step trains at; scheduler.step() sets the next
        optimizer.step()
        scheduler.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}  lr {step_lr:.5f}")

    print(f"train accuracy: {accuracy(model, train_points, train_labels):.3f}")
    print(f"test accuracy: {accuracy(model, test_points, test_labels):.3f}")


if __name__ == "__main__":
    main()
