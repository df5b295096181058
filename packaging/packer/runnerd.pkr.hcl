# Bakes a runner AMI: Debian 12 with the runnerd package installed but not started, and the
# bake-time work of `runnerd prepare` done (packages, agent binary), so instances boot straight
# into fetching the token and running the job.
#
#   packer build -var deb=build/runnerd_VERSION_amd64.deb -var region=us-east-1 \
#     packaging/packer/runnerd.pkr.hcl
#
# For Graviton runners (the stack's Architecture=arm64): -var arch=arm64 with the arm64 .deb
# (make deb ARCH=arm64); the build starts from Debian's arm64 image on a t4g.small.
#
# (-var region may be left out when AWS_REGION is set.)
#
# The runners' own configuration (runnerd.conf, baked in; no secret in it) is a variable too.
# Written for Debian's packer 1.6 (builders built in) and newer ones: with packer >= 1.10, run
# `packer plugins install github.com/hashicorp/amazon` first.

packer {
  required_version = ">= 1.6.6"
}

variable "deb" {
  type        = string
  description = "Path of the runnerd_*.deb to install (make deb)."
}

variable "config" {
  type        = string
  default     = ""
  description = "runnerd.conf baked into the image (default: runnerd.conf beside this file)."
}

locals {
  config = var.config != "" ? var.config : "${path.root}/runnerd.conf"
}

# The region to bake in: -var region=..., else AWS_REGION (never a silent us-east-1).
variable "region" {
  type    = string
  default = env("AWS_REGION")
}

# The image's architecture, Debian's name for it: amd64 or arm64 (the .deb must be its).
variable "arch" {
  type    = string
  default = "amd64"
}

# Empty: a small instance of the architecture (t3.small, t4g.small).
variable "instance_type" {
  type    = string
  default = ""
}

locals {
  # EC2's name for the architecture, and the build instance; an arch not listed fails here.
  ec2_arch      = { amd64 = "x86_64", arm64 = "arm64" }[var.arch]
  instance_type = var.instance_type != "" ? var.instance_type : { amd64 = "t3.small", arm64 = "t4g.small" }[var.arch]
}

variable "ami_name_prefix" {
  type    = string
  default = "runnerd-debian-12"
}

source "amazon-ebs" "debian12" {
  region        = var.region
  instance_type = local.instance_type
  ssh_username  = "admin"
  ami_name      = "${var.ami_name_prefix}-${var.arch}-${formatdate("YYYYMMDD-hhmmss", timestamp())}"

  # Debian's own images (the Debian cloud team's account).
  source_ami_filter {
    owners      = ["136693071363"]
    most_recent = true
    filters = {
      name                = "debian-12-${var.arch}-*"
      architecture        = local.ec2_arch
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
  }

  # No metadata_options (IMDSv2 only) for the build instance: Debian's packer 1.6 lacks the
  # block. The runners' launch template enforces IMDSv2 where it matters.

  tags = {
    Name      = "${var.ami_name_prefix}-${var.arch}"
    "runnerd" = "baked"
  }
}

build {
  sources = ["source.amazon-ebs.debian12"]

  provisioner "file" {
    source      = var.deb
    destination = "/tmp/runnerd.deb"
  }

  provisioner "file" {
    source      = local.config
    destination = "/tmp/runnerd.conf"
  }

  provisioner "shell" {
    inline = [
      "set -eux",
      # The configuration first, so the package keeps it (--force-confold).
      "sudo install -d -m 0755 /etc/runnerd",
      "sudo install -m 0644 /tmp/runnerd.conf /etc/runnerd/runnerd.conf",
      "sudo apt-get update -q",
      # RUNNERD_NO_START=1: enable runnerd.service for the image's boots, but do not start it
      # here (it would run the boot flow on the build instance and power it off).
      "sudo env RUNNERD_NO_START=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold /tmp/runnerd.deb",
      "sudo runnerd check-config >/dev/null",
      "sudo runnerd prepare",
      "systemctl is-enabled runnerd.service",
      # Not `! systemctl is-active ...`: under set -e a negated command never fails the build.
      "if systemctl is-active --quiet runnerd.service; then echo 'runnerd is running on the build instance' >&2; exit 1; fi",
      # Clean up: nothing of this build in the image but the package and what prepare installed.
      "rm -f /tmp/runnerd.deb /tmp/runnerd.conf",
      "sudo apt-get clean",
      "sudo rm -rf /var/lib/apt/lists/*",
      # Let cloud-init treat the image's first boot as a first boot.
      "sudo cloud-init clean --logs",
    ]
  }
}
