console.log("register-kernel: pending")
