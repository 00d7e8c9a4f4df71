# /etc/profile.d/guestfs-appliance.sh
# Written by guestfs-appliance @VERSION@ (`guestfs-appliance env --install`);
# run that command again to update it, or delete this file to undo.
# Sets the environment libguestfs runs with, for login shells.
@BODY@
