# The SAN paper's super-resolution recipe with lambda_adv = 1e-2 (see san-srgan_x4c64b16_adv1e-1_1xb32-400k_div2k.py).
_base_ = "./san-srgan_x4c64b16_adv1e-1_1xb32-400k_div2k.py"

lambda_adv = 1e-2
model = dict(gan_loss=dict(loss_weight=lambda_adv))
