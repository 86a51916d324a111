# The SAN paper's super-resolution recipe (Kligvasser & Michaeli, AAAI 2021, "Single Image Super Resolution"),
# on mmagic's srgan_x4c64b16_1xb16-1000k_div2k.py:
#   G: SRGAN's generator without BN (mmagic's MSRResNet, 64 channels, 16 blocks, ~1.5M parameters),
#      initialised from a PSNR-trained checkpoint;
#   D: a plain 10-conv + 2-FC critic (san_mmagic's SRCritic) under SAN with circular padding;
#   L = 1e-2 * L1 + VGG19 conv5_4 features (L1) + lambda_adv * hinge, lambda_adv = 1e-1 here (1e-2: the
#       adv1e-2 config next to this one);
#   Adam lr 2e-4 betas (0.5, 0.9) for G and D, batch 32, 400k iterations (one D and one G step each),
#   lr halved at 12.5/25/50/75% (50k/100k/200k/300k); training patches: random 128x128 crops, horizontal flips.
# Weights read from local files (set the environment variables or --cfg-options):
#   SAN_PSNR_CHECKPOINT  a PSNR-trained MSRResNet, e.g. mmagic's (trained with L1 rather than the paper's MSE) from
#                        https://download.openmmlab.com/mmediting/restorers/srresnet_srgan/
#                        msrresnet_x4c64b16_1x16_300k_div2k_20200521-61556be5.pth
#   SAN_VGG19_PATH       torchvision's VGG19, https://download.pytorch.org/models/vgg19-dcbb9e9d.pth
#   SAN_DIV2K_ROOT       the folder holding DIV2K/ (and Set14/ for validation), as mmagic's `data`
_base_ = "mmagic::srgan_resnet/srgan_x4c64b16_1xb16-1000k_div2k.py"

custom_imports = dict(imports=["san_mmagic"], allow_failed_imports=False)

data_root = "{{$SAN_DIV2K_ROOT:data}}"
psnr_checkpoint = "{{$SAN_PSNR_CHECKPOINT:checkpoints/msrresnet_x4c64b16_1x16_300k_div2k_20200521-61556be5.pth}}"
vgg19_path = "{{$SAN_VGG19_PATH:checkpoints/vgg19-dcbb9e9d.pth}}"
lambda_adv = 1e-1

model = dict(
    # MSRResNet takes no init_cfg: the PSNR checkpoint (keys 'generator.*') initialises the whole model, last
    init_cfg=dict(type="Pretrained", checkpoint=psnr_checkpoint),
    discriminator=dict(_delete_=True, type="SRCritic", in_channels=3, mid_channels=64, max_channels=512, num_stages=5),
    pixel_loss=dict(type="L1Loss", loss_weight=1e-2, reduction="mean"),
    perceptual_loss=dict(
        _delete_=True,
        type="LocalVGGPerceptualLoss",
        layer_weights={"34": 1.0},
        vgg_type="vgg19",
        vgg_path=vgg19_path,
        perceptual_weight=1.0,
        norm_img=False,
    ),
    gan_loss=dict(_delete_=True, type="GANLoss", gan_type="hinge", loss_weight=lambda_adv),
)

train_pipeline = [
    dict(type="LoadImageFromFile", key="img", color_type="color", channel_order="rgb"),
    dict(type="LoadImageFromFile", key="gt", color_type="color", channel_order="rgb"),
    dict(type="SetValues", dictionary=dict(scale=4)),
    dict(type="PairedRandomCrop", gt_patch_size=128),
    dict(type="Flip", keys=["img", "gt"], flip_ratio=0.5, direction="horizontal"),
    dict(type="PackInputs"),
]
train_dataloader = dict(batch_size=32, dataset=dict(data_root=data_root + "/DIV2K", pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root + "/Set14"))

optim_wrapper = dict(
    generator=dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=2e-4, betas=(0.5, 0.9))),
    discriminator=dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=2e-4, betas=(0.5, 0.9))),
)

param_scheduler = dict(
    _delete_=True, type="MultiStepLR", by_epoch=False, milestones=[50000, 100000, 200000, 300000], gamma=0.5
)
train_cfg = dict(type="IterBasedTrainLoop", max_iters=400_000, val_interval=5000)

custom_hooks = [
    dict(type="BasicVisualizationHook", interval=1),
    dict(type="SANHook", module="discriminator", circular_padding=True, strip_spectral_norm=True),
]

# checkpoints in the work dir (--work-dir, or ./work_dirs/<config name>), not under mmagic's fixed save_dir
default_hooks = dict(checkpoint=dict(out_dir=None))
