#!/bin/sh
# @PATH@ — installed by guestfs-appliance @VERSION@.
# Run by the kernel packages' maintainer scripts and by installkernel
# (`make install`) with the kernel version and image path, which we do not
# need: `build --if-needed` finds the kernel itself. --hook hands the
# rebuild to guestfs-appliance.service without waiting where systemd runs,
# else builds inline for at most 15 minutes; it never fails the kernel's
# installation or removal.
if [ -x @BIN@ ]; then
    @BIN@ build --if-needed --hook
fi
exit 0
