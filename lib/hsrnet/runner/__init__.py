"""Running the scripts: the command line (cli), run setup (setup: folders and
logging, device, optimizer, schedule) and the job wrapper (launch). This
package sits above config, data and models; nothing below imports it."""
