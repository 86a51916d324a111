# SAN version of sngan-standard-cnn_lr2e-4-ndisc5-1xb64_cifar10-32x32.py (the paper's CIFAR-10 "standard CNN"):
# spectral norm removed from D, SAN on every D conv/linear with circular padding, one D step per G step,
# hinge loss, Adam lr 2e-4 betas (0.5, 0.9), 200 epochs of batch 64 (Kligvasser & Michaeli, AAAI 2021).
_base_ = "./sngan-standard-cnn_lr2e-4-ndisc5-1xb64_cifar10-32x32.py"

discriminator_steps = 1
model = dict(discriminator=dict(with_spectral_norm=False), discriminator_steps=discriminator_steps)

train_cfg = dict(max_iters=156250)  # 200 epochs of 50k images in batches of 64 (one D and one G step each)

optim_wrapper = dict(
    generator=dict(optimizer=dict(type="Adam", lr=0.0002, betas=(0.5, 0.9))),
    discriminator=dict(optimizer=dict(type="Adam", lr=0.0002, betas=(0.5, 0.9))),
)

custom_hooks = [
    dict(type="VisualizationHook", interval=5000, fixed_input=True, vis_kwargs_list=dict(type="GAN", name="fake_img")),
    dict(type="SANHook", module="discriminator", circular_padding=True, strip_spectral_norm=True),
]
