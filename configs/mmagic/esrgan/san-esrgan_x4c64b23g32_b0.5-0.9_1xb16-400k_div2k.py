# SAN override of mmagic's esrgan_x4c64b23g32_1xb16-400k_div2k.py: D (mmagic's ModifiedVGG, 10 convs + 2 FC,
# 128x128 inputs) under SAN with circular padding, D's Adam betas (0.5, 0.9). Everything else as ESRGAN.
# Weights read from local files instead of URLs (set the environment variables or --cfg-options):
#   SAN_ESRGAN_PSNR_CHECKPOINT  the PSNR-trained RRDBNet of mmagic, from https://download.openmmlab.com/mmediting/
#                               restorers/esrgan/esrgan_psnr_x4c64b23g32_1x16_1000k_div2k_20200420-bf5c993c.pth
#   SAN_VGG19_PATH              torchvision's VGG19, https://download.pytorch.org/models/vgg19-dcbb9e9d.pth
#   SAN_DIV2K_ROOT              the folder holding DIV2K/ (and Set14/ for validation), as mmagic's `data`
_base_ = "mmagic::esrgan/esrgan_x4c64b23g32_1xb16-400k_div2k.py"

custom_imports = dict(imports=["san_mmagic"], allow_failed_imports=False)

data_root = "{{$SAN_DIV2K_ROOT:data}}"
psnr_checkpoint = (
    "{{$SAN_ESRGAN_PSNR_CHECKPOINT:checkpoints/esrgan_psnr_x4c64b23g32_1x16_1000k_div2k_20200420-bf5c993c.pth}}"
)
vgg19_path = "{{$SAN_VGG19_PATH:checkpoints/vgg19-dcbb9e9d.pth}}"

model = dict(
    generator=dict(init_cfg=dict(type="Pretrained", checkpoint=psnr_checkpoint, prefix="generator.")),
    perceptual_loss=dict(
        _delete_=True,
        type="LocalVGGPerceptualLoss",
        layer_weights={"34": 1.0},
        vgg_type="vgg19",
        vgg_path=vgg19_path,
        perceptual_weight=1.0,
        norm_img=False,
    ),
)

train_dataloader = dict(dataset=dict(data_root=data_root + "/DIV2K"))
val_dataloader = dict(dataset=dict(data_root=data_root + "/Set14"))

optim_wrapper = dict(discriminator=dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-4, betas=(0.5, 0.9))))

custom_hooks = [
    dict(type="BasicVisualizationHook", interval=1),
    dict(type="SANHook", module="discriminator", circular_padding=True, strip_spectral_norm=True),
]

# checkpoints in the work dir (--work-dir, or ./work_dirs/<config name>), not under mmagic's fixed save_dir
default_hooks = dict(checkpoint=dict(out_dir=None))
