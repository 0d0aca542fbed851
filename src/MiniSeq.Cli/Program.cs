// Placeholder entry point; the command surface is built in Commands/.
return 0;
