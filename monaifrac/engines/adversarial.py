"""Adversarial segmentation: a ``SupervisedTrainer`` whose segmenter also learns to fool a critic.

The generator is the bundle's segmentation network (``network_def``), trained with the
bundle's loss plus ``adv_weight`` × an adversarial term. The discriminator (MONAI
``PatchDiscriminator``) is conditioned on the film: it sees film ⊕ mask, the softmax
probabilities for a generated mask and the one-hot label for a true one, and judges each
patch real or generated (MONAI ``PatchAdversarialLoss``, least squares or hinge).

It is an ordinary MONAI ``SupervisedTrainer`` otherwise: the same data, inferer,
postprocessing, metrics and handlers, and ``IterationEvents`` fired as MONAI fires them.
MONAI's ``GanTrainer`` fits only an unconditional GAN (latent → image), which is not this.
"""

from __future__ import annotations

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.losses import PatchAdversarialLoss
from monai.networks.utils import one_hot
from monai.utils.enums import CommonKeys as Keys

#: what an adversarial iteration adds to ``engine.state.output`` (all detached scalars)
ADVERSARIAL_LOG_KEYS = ("seg_loss", "adv_loss", "d_loss", "d_real", "d_fake")


class AdversarialTrainer(SupervisedTrainer):
    """Supervised segmentation training plus a conditional patch discriminator.

    Args:
        discriminator: sees (B, C_image + num_classes, *spatial) and returns a list whose last
            item is the patch logits (``PatchDiscriminator``'s output).
        d_optimizer: the discriminator's optimiser.
        adv_weight: λ of the generator's adversarial term.
        adv_criterion: ``least_squares``, ``hinge`` or ``bce`` (``PatchAdversarialLoss``).
        adv_warmup_epochs: epochs of plain supervised training before the discriminator joins
            (the discriminator is not updated during them either).
        num_classes: channels of the segmenter's output (one-hot size of the label).
        other args: as ``SupervisedTrainer``; ``loss_function`` is the segmentation loss.

    Each iteration: (1) the segmenter's logits and its loss ``seg_loss + λ·adv_loss``
    (``adv_loss`` asks the discriminator to call the generated mask real), one step of the
    segmenter's optimiser; (2) the discriminator's loss on true and on generated (detached)
    masks, ``d_loss = (real + fake) / 2``, one step of ``d_optimizer``. ``loss`` in the output
    is the segmenter's total loss, so MONAI handlers read it as in supervised training;
    :data:`ADVERSARIAL_LOG_KEYS` are added, with ``d_real``/``d_fake`` the mean discriminator
    outputs on true and generated masks (a user sees it winning or collapsing).
    """

    def __init__(self, *args, discriminator: torch.nn.Module, d_optimizer: torch.optim.Optimizer,
                 adv_weight: float = 0.05, adv_criterion: str = "least_squares", adv_warmup_epochs: int = 0,
                 num_classes: int = 3, **kwargs):
        super().__init__(*args, **kwargs)
        if adv_weight < 0 or adv_warmup_epochs < 0:
            raise ValueError(f"adv_weight and adv_warmup_epochs must be ≥ 0, got {adv_weight}, {adv_warmup_epochs}")
        self.discriminator = discriminator
        self.d_optimizer = d_optimizer
        self.adv_weight = float(adv_weight)
        self.adv_warmup_epochs = int(adv_warmup_epochs)
        self.num_classes = int(num_classes)
        self.adv_loss = PatchAdversarialLoss(criterion=adv_criterion, reduction="mean")
        self.d_scaler = torch.amp.GradScaler("cuda") if self.amp else None

    def adversarial(self) -> bool:
        """Whether the discriminator takes part in this epoch (after the warm-up)."""
        return self.state.epoch > self.adv_warmup_epochs

    def _autocast(self):
        import contextlib

        return torch.autocast("cuda", **self.amp_kwargs) if self.amp and self.scaler is not None \
            else contextlib.nullcontext()

    def _critic(self, image: torch.Tensor, mask: torch.Tensor, train_critic: bool) -> torch.Tensor:
        # The generator's step runs the bare module: under DDP, a forward through the wrapper
        # would wait for discriminator gradients that this step never produces.
        critic = self.discriminator if train_critic else getattr(self.discriminator, "module", self.discriminator)
        return critic(torch.cat([image, mask.to(image.dtype)], dim=1))[-1]

    def _iteration(self, engine: AdversarialTrainer, batchdata) -> dict:  # type: ignore[override]
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        inputs, targets = batch[0], batch[1]
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets}
        adversarial = engine.adversarial()
        zero = torch.zeros((), device=inputs.device)

        engine.network.train()
        engine.discriminator.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with engine._autocast():
            logits = engine.inferer(inputs, engine.network)
            engine.state.output[Keys.PRED] = logits
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            seg_loss = engine.loss_function(logits, targets).mean()
            # the segmentation channels only: a presence network's last channel is not part of the mask
            prob = torch.softmax(logits[:, : engine.num_classes].float(), dim=1)
            if adversarial:
                for p in engine.discriminator.parameters():
                    p.requires_grad_(False)  # the generator's step leaves the critic's gradients alone
                adv_loss = engine.adv_loss(engine._critic(inputs, prob, False), target_is_real=True,
                                           for_discriminator=False)
                for p in engine.discriminator.parameters():
                    p.requires_grad_(True)
            else:
                adv_loss = zero
            loss = seg_loss + engine.adv_weight * adv_loss
        engine.state.output[Keys.LOSS] = loss
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        if engine.scaler is not None:
            engine.scaler.scale(loss).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            loss.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.optimizer.step()

        d_loss, d_real, d_fake = zero, zero, zero
        if adversarial:
            engine.d_optimizer.zero_grad(set_to_none=True)
            truth = one_hot(targets.long(), num_classes=engine.num_classes, dim=1)
            with engine._autocast():
                # true and generated masks in one forward: DDP expects one forward per backward
                both = engine._critic(torch.cat([inputs, inputs]), torch.cat([truth.to(prob.dtype), prob.detach()]),
                                      True)
                real, fake = both[: len(inputs)], both[len(inputs):]
                d_loss = 0.5 * (engine.adv_loss(real, target_is_real=True, for_discriminator=True)
                                + engine.adv_loss(fake, target_is_real=False, for_discriminator=True))
            if engine.d_scaler is not None:
                engine.d_scaler.scale(d_loss).backward()
                engine.d_scaler.step(engine.d_optimizer)
                engine.d_scaler.update()
            else:
                d_loss.backward()
                engine.d_optimizer.step()
            d_real, d_fake = real.detach().float().mean(), fake.detach().float().mean()

        engine.state.output.update({Keys.PRED: logits.detach(), Keys.LOSS: loss.detach(),
                                    "seg_loss": seg_loss.detach(), "adv_loss": adv_loss.detach(),
                                    "d_loss": d_loss.detach(), "d_real": d_real, "d_fake": d_fake})
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
